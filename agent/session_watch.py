"""Which work session the agent records into, and noticing when it ends elsewhere.

The user's active session is polled from the gateway every few seconds, so a session
stopped in the browser (or by a manager) is noticed within seconds; an acknowledgement
refusing events after the session's end is noticed at once (:meth:`ended`). While the
gateway cannot be reached the last known session is kept: an agent offline keeps
recording, and the server refuses what falls after a stop it did not hear of.
"""

from __future__ import annotations

import asyncio
import logging

from agent.gateway import Gateway, GatewayError
from agent.outbox import Outbox
from agent.tokens import TokenKeeper

logger = logging.getLogger("workpulse.agent.session")

SESSION = "session_id"


class SessionWatch:
    def __init__(
        self, gateway: Gateway, tokens: TokenKeeper, user_id: str, outbox: Outbox, interval: float = 3.0
    ) -> None:
        self._gateway = gateway
        self._tokens = tokens
        self._user_id = user_id
        self._outbox = outbox
        self._interval = interval
        saved = outbox.get_state(SESSION)
        self.session_id: str | None = saved if isinstance(saved, str) else None
        self._ended: set[str] = set()

    def current(self) -> str | None:
        return self.session_id

    def ended(self, session_id: str) -> None:
        """The server says this session is over: stop recording into it now."""
        self._ended.add(session_id)
        if self.session_id == session_id:
            logger.info("session ended elsewhere; recording paused", extra={"fields": {"session_id": session_id}})
            self._set(None)

    async def poll(self) -> None:
        try:
            found = await self._gateway.active_session(await self._tokens.access(), self._user_id)
        except GatewayError as exc:
            if exc.status == 401:
                await self._tokens.refresh(force=True)  # expired early (a clock off); SignedOut ends the agent
            elif exc.status != 0 and exc.status < 500:
                logger.warning("the gateway refused the session lookup", extra={"fields": {"error": exc.message}})
            return  # offline or refused: keep the last known session, ask again later
        new = found.id if found is not None and found.id not in self._ended else None
        if new != self.session_id:
            if new is None:
                logger.info("no active session; recording paused", extra={"fields": {"session_id": self.session_id}})
            else:
                logger.info("recording into session", extra={"fields": {"session_id": new}})
            self._set(new)

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self._interval)

    def _set(self, session_id: str | None) -> None:
        self.session_id = session_id
        if session_id is None:
            self._outbox.delete_state(SESSION)
        else:
            self._outbox.put_state(SESSION, session_id)
