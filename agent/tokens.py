"""The access token in memory, refreshed before it expires; the refresh token on disk.

A refresh the server refuses (401: the token was revoked, the account disabled, or it
expired) is final: :class:`SignedOut` stops the agent with a message that says what to
do. A gateway that cannot be reached is not: the current access token is used until it
expires and the refresh is tried again.
"""

from __future__ import annotations

import asyncio
import time

from agent.credentials import CredentialStore
from agent.gateway import Gateway, GatewayError

# Refresh this long before the access token expires (or at half its life when shorter).
REFRESH_AHEAD = 60.0


class SignedOut(Exception):
    """The agent has no valid sign-in; ``workpulse-agent login`` is what it needs."""


class TokenKeeper:
    def __init__(self, gateway: Gateway, store: CredentialStore) -> None:
        self._gateway = gateway
        self._store = store
        self._access: str | None = None
        self._expires_at = 0.0
        self._lifetime = 0.0
        self._lock = asyncio.Lock()

    async def access(self) -> str:
        """A valid access token (refreshed first when it is near its end)."""
        if self._access is None or time.monotonic() >= self._expires_at - self._margin():
            await self.refresh()
        assert self._access is not None
        return self._access

    def _margin(self) -> float:
        return min(REFRESH_AHEAD, self._lifetime / 2)

    async def refresh(self, *, force: bool = False) -> None:
        async with self._lock:
            if not force and self._access is not None and time.monotonic() < self._expires_at - self._margin():
                return  # another caller refreshed meanwhile
            token = self._store.load()
            if token is None:
                raise SignedOut("not signed in: run `workpulse-agent login`")
            try:
                signed = await self._gateway.refresh(token)
            except GatewayError as exc:
                if exc.status in (400, 401, 403):
                    self._access = None
                    raise SignedOut(
                        f"the sign-in was revoked or has expired ({exc.message}): run `workpulse-agent login`"
                    ) from exc
                if self._access is not None and time.monotonic() < self._expires_at:
                    return  # keep using the current token; the next call tries again
                raise
            # Refresh tokens rotate: the new one is stored before the old one is forgotten.
            self._store.save(signed.refresh_token)
            self._access = signed.access_token
            self._lifetime = float(signed.expires_in)
            self._expires_at = time.monotonic() + signed.expires_in

    def adopt(self, access_token: str, expires_in: int) -> None:
        """Uses a token just issued by a log-in."""
        self._access = access_token
        self._lifetime = float(expires_in)
        self._expires_at = time.monotonic() + expires_in
