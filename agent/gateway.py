"""The agent's calls to the gateway's REST API: log-in, token refresh, sessions.

The agent streams activity to ingest over gRPC; everything an account does (sign in,
start or stop a session, find the active one) goes through the same REST API the
browser uses, so permissions are the services' decision in one place.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx


class GatewayError(Exception):
    """The gateway refused (``status`` is its HTTP status) or could not be reached (0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class SignedIn:
    user_id: str
    organization_id: str
    email: str
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class ActiveSession:
    id: str
    project_id: str | None
    start_time: str


class Gateway:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def log_in(self, email: str, password: str, organization: str) -> SignedIn:
        body: dict[str, str] = {"email": email, "password": password}
        body["organization_id" if _is_uuid(organization) else "organization"] = organization
        return _signed_in(await self._request("POST", "/auth/login", json=body))

    async def refresh(self, refresh_token: str) -> SignedIn:
        return _signed_in(await self._request("POST", "/auth/refresh", json={"refresh_token": refresh_token}))

    async def log_out(self, refresh_token: str) -> None:
        await self._request("POST", "/auth/logout", json={"refresh_token": refresh_token})

    async def active_session(self, access_token: str, user_id: str) -> ActiveSession | None:
        """The user's own active session (managers see the organization's: filtered here)."""
        found = await self._request("GET", "/sessions/active", token=access_token)
        mine = [s for s in found if s.get("user_id") == user_id]
        return _session(mine[0]) if mine else None

    async def start_session(self, access_token: str, project_id: str | None) -> ActiveSession:
        body = {"project_id": project_id} if project_id else {}
        return _session(await self._request("POST", "/sessions/start", json=body, token=access_token))

    async def stop_session(self, access_token: str, session_id: str) -> None:
        await self._request("POST", f"/sessions/{session_id}/stop", json={}, token=access_token)

    async def _request(self, method: str, path: str, *, json: Any = None, token: str | None = None) -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            reply = await self._client.request(method, path, json=json, headers=headers)
        except httpx.HTTPError as exc:
            raise GatewayError(0, f"gateway unreachable: {exc}") from exc
        if reply.status_code >= 400:
            raise GatewayError(reply.status_code, _message(reply))
        return reply.json() if reply.content else None


def _message(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return f"HTTP {reply.status_code}"
    if isinstance(body, dict):
        detail = body.get("message") or body.get("error") or body.get("detail")
        if detail:
            return f"HTTP {reply.status_code}: {detail}"
    return f"HTTP {reply.status_code}"


def _signed_in(body: dict[str, Any]) -> SignedIn:
    user = body["user"]
    return SignedIn(
        user_id=user["id"],
        organization_id=user["organization_id"],
        email=user["email"],
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
        expires_in=int(body["expires_in"]),
    )


def _session(body: dict[str, Any]) -> ActiveSession:
    return ActiveSession(id=body["id"], project_id=body.get("project_id"), start_time=body["start_time"])


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
