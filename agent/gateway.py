"""The agent's calls to the gateway's REST API: log-in, token refresh, sessions.

The agent streams activity to ingest over gRPC; everything an account does (sign in,
start or stop a session, find the active one) goes through the same REST API the
browser uses, so permissions are the services' decision in one place.

Python's own ``urllib`` makes these few calls (one every few seconds at most), each in a
worker thread: an HTTP client library with its async stack, and the command-line tool
httpx imports with it, cost the agent about 9 MiB of its 60 MiB budget.
"""

from __future__ import annotations

import asyncio
import json as _json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any


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
        self._base = base_url.rstrip("/")
        self._timeout = timeout

    async def aclose(self) -> None:
        """Nothing is kept open between calls (one call every few seconds at most)."""

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
        return await asyncio.to_thread(self._call, method, path, json, token)

    def _call(self, method: str, path: str, body: Any, token: str | None) -> Any:
        headers = {"accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = _json.dumps(body).encode()
            headers["content-type"] = "application/json"
        request = urllib.request.Request(self._base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as reply:
                content = reply.read()
        except urllib.error.HTTPError as exc:
            raise GatewayError(exc.code, _message(exc.code, exc.read())) from None
        except (urllib.error.URLError, OSError) as exc:
            raise GatewayError(0, f"gateway unreachable: {getattr(exc, 'reason', exc)}") from exc
        return _json.loads(content) if content else None


def _message(status: int, content: bytes) -> str:
    try:
        body = _json.loads(content)
    except ValueError:
        return f"HTTP {status}"
    if isinstance(body, dict):
        detail = body.get("message") or body.get("error") or body.get("detail")
        if detail:
            return f"HTTP {status}: {detail}"
    return f"HTTP {status}"


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
