"""An in-process auth server on a free port (real PostgreSQL and Redis), the gateway app
in front of it (httpx over ASGI, real gRPC underneath), and helpers that sign people up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services.auth.main import Settings, build
from tests.support import AsgiClient, InProcessServer, start_in_process
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc
from workpulse.settings import load

PASSWORD = "correct horse battery"


# The async stub type exists only in the generated .pyi, hence a string alias.
AuthServer: TypeAlias = "InProcessServer[auth_pb2_grpc.AuthServiceAsyncStub]"


async def start_auth(**overrides: object) -> tuple[AuthServer, Callable[[], Awaitable[None]]]:
    return await start_in_process(build, load(Settings, grpc_port=0, **overrides), auth_pb2_grpc.AuthServiceStub)


@pytest.fixture(scope="session")
async def auth_server(settings_env: dict[str, str]) -> AsyncIterator[AuthServer]:
    # The shared server must not trip the per-address limit: the whole suite logs in from 127.0.0.1.
    server, stop = await start_auth(login_attempts_per_address=100_000)
    yield server
    await stop()


@pytest.fixture(scope="session")
def stub(auth_server: AuthServer) -> auth_pb2_grpc.AuthServiceAsyncStub:
    return auth_server.stub


class GatewayClient(AsgiClient):
    """The gateway app with only the auth service as its peer."""

    def __init__(self, auth_address: str, address: str = "127.0.0.1") -> None:
        super().__init__(create_app(load(GatewaySettings, auth_addr=auth_address)), address)


@pytest.fixture(scope="session")
async def gateway(auth_server: AuthServer) -> AsyncIterator[httpx.AsyncClient]:
    async with GatewayClient(auth_server.address) as client:
        yield client


@dataclass(frozen=True)
class Member:
    """Someone who signed up or joined: their user, tokens and credentials."""

    id: str
    org: str
    email: str
    role: str
    access_token: str
    refresh_token: str

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.access_token}"),)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access_token}"}


ROLE_NAMES = {auth_pb2.ROLE_ADMIN: "admin", auth_pb2.ROLE_MANAGER: "manager", auth_pb2.ROLE_EMPLOYEE: "employee"}


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def _member(user: auth_pb2.User, tokens: auth_pb2.Tokens) -> Member:
    return Member(
        user.id, user.organization_id, user.email, ROLE_NAMES[user.role], tokens.access_token, tokens.refresh_token
    )


async def sign_up(stub: auth_pb2_grpc.AuthServiceAsyncStub, **fields: Any) -> Member:
    request = {"email": unique_email("admin"), "password": PASSWORD, "name": "Ada Admin", "organization_name": "Acme"}
    reply = await stub.SignUp(auth_pb2.SignUpRequest(**{**request, **fields}))
    return _member(reply.user, reply.tokens)


async def invite(stub: auth_pb2_grpc.AuthServiceAsyncStub, inviter: Member, role: str, email: str = "") -> Any:
    wire = {v: k for k, v in ROLE_NAMES.items()}[role]
    return await stub.CreateInvite(
        auth_pb2.CreateInviteRequest(email=email or unique_email(role), role=wire), metadata=inviter.md
    )


async def join(stub: auth_pb2_grpc.AuthServiceAsyncStub, inviter: Member, role: str) -> Member:
    issued = await invite(stub, inviter, role)
    reply = await stub.RegisterWithInvite(
        auth_pb2.RegisterWithInviteRequest(
            email=issued.email,
            password=PASSWORD,
            name=f"{role.title()} Person",
            organization_id=inviter.org,
            invite_token=issued.token,
        )
    )
    return _member(reply.user, reply.tokens)


@dataclass(frozen=True)
class Organization:
    admin: Member
    manager: Member
    employee: Member


@pytest.fixture
async def org(stub: auth_pb2_grpc.AuthServiceAsyncStub) -> Organization:
    """A fresh organization with one member of each role."""
    admin = await sign_up(stub)
    return Organization(admin, await join(stub, admin, "manager"), await join(stub, admin, "employee"))
