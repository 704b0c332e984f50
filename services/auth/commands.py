"""What callers ask the auth service to do, as plain data (unvalidated: use cases check it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SignUp:
    email: str
    password: str
    name: str
    organization_name: str
    timezone: str = ""
    client_address: str = ""
    # Empty: derived from organization_name.
    workspace: str = ""


@dataclass(frozen=True, slots=True)
class RegisterWithInvite:
    email: str
    password: str
    name: str
    organization_id: str
    invite_token: str
    client_address: str = ""


@dataclass(frozen=True, slots=True)
class LogIn:
    email: str
    password: str
    organization_id: str
    client_address: str
    # The workspace name, instead of organization_id.
    organization: str = ""


@dataclass(frozen=True, slots=True)
class CreateInvite:
    email: str
    role: str
    ttl_hours: int = 0


@dataclass(frozen=True, slots=True)
class ListUsers:
    page_size: int = 0
    page_token: str = ""
    user_ids: tuple[str, ...] = ()
