"""bcrypt hashing, run off the event loop.

Log-in verifies against a dummy hash of the same cost when the user does not exist, so an
unknown email costs the same time as a wrong password. A password bcrypt cannot hold whole
(see :func:`check_bcrypt_can_hold`) never reaches bcrypt, where a NUL makes different
passwords hash alike (``P\\0P`` matches ``P``'s hash) and more than 72 bytes raises. It is
answered like a wrong password, after the same dummy-hash work.
"""

from __future__ import annotations

import asyncio

import bcrypt

from services.auth.domain import check_bcrypt_can_hold
from workpulse.errors import InvalidArgument

_DUMMY_PASSWORD = b"workpulse-no-such-user"


class PasswordHasher:
    def __init__(self, cost: int) -> None:
        self._cost = cost
        self._dummy = bcrypt.hashpw(_DUMMY_PASSWORD, bcrypt.gensalt(cost))

    async def hash(self, password: str) -> str:
        # The use cases check the policy first; this keeps a caller that skipped it from
        # storing a hash that other passwords also match.
        check_bcrypt_can_hold(password)
        hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), bcrypt.gensalt(self._cost))
        return hashed.decode()

    async def verify(self, password: str, hashed: str | None) -> bool:
        """True when ``password`` matches ``hashed``. With no hash, or a password bcrypt cannot
        hold whole, spends the same time on the dummy hash and says no."""
        try:
            check_bcrypt_can_hold(password)
        except InvalidArgument:
            await asyncio.to_thread(bcrypt.checkpw, _DUMMY_PASSWORD, self._dummy)
            return False
        candidate = hashed.encode() if hashed else self._dummy
        matches = await asyncio.to_thread(bcrypt.checkpw, password.encode(), candidate)
        return matches and hashed is not None
