"""bcrypt hashing, run off the event loop.

Log-in verifies against a dummy hash of the same cost when the user does not exist, so an
unknown email costs the same time as a wrong password.
"""

from __future__ import annotations

import asyncio

import bcrypt


class PasswordHasher:
    def __init__(self, cost: int) -> None:
        self._cost = cost
        self._dummy = bcrypt.hashpw(b"workpulse-no-such-user", bcrypt.gensalt(cost)).decode()

    async def hash(self, password: str) -> str:
        hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), bcrypt.gensalt(self._cost))
        return hashed.decode()

    async def verify(self, password: str, hashed: str | None) -> bool:
        """True when ``password`` matches ``hashed``; with no hash, spends the same time and says no."""
        candidate = (hashed or self._dummy).encode()
        matches = await asyncio.to_thread(bcrypt.checkpw, password.encode(), candidate)
        return matches and hashed is not None
