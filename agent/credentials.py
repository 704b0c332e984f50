"""Where the agent keeps its refresh token: the OS keyring, or a 0600 file without one.

Only the refresh token is kept; access tokens live in memory and are refreshed before
they expire. The keyring entry is named by the data folder, so two agents with their
own ``--data-dir`` (two accounts on one machine, tests) keep apart.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import keyring
import keyring.errors
from keyring.backends import fail

logger = logging.getLogger("workpulse.agent.credentials")

SERVICE = "workpulse-agent"
FILE_NAME = "credentials"


class CredentialStore:
    def __init__(self, data_dir: Path) -> None:
        self._file = data_dir / FILE_NAME
        self._account = str(data_dir.resolve())

    @property
    def where(self) -> str:
        """For ``status``: which store holds the token."""
        return f"keyring ({type(keyring.get_keyring()).__name__})" if _keyring_usable() else f"file {self._file}"

    def save(self, refresh_token: str) -> None:
        if _keyring_usable():
            try:
                keyring.set_password(SERVICE, self._account, refresh_token)
                self._file.unlink(missing_ok=True)
                return
            except keyring.errors.KeyringError as exc:  # locked or broken keyring: fall back, say so once
                logger.warning(
                    "keyring unavailable; keeping the token in a 0600 file", extra={"fields": {"error": str(exc)}}
                )
        self._file.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 from the start (never world-readable, not even for a moment), then
        # replaced atomically so a crash leaves the old token or the new one.
        temporary = self._file.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(refresh_token)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self._file)

    def load(self) -> str | None:
        if _keyring_usable():
            try:
                found = keyring.get_password(SERVICE, self._account)
            except keyring.errors.KeyringError:
                found = None
            if found:
                return found
        try:
            return self._file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def delete(self) -> None:
        if _keyring_usable():
            with contextlib.suppress(keyring.errors.KeyringError):
                keyring.delete_password(SERVICE, self._account)
        self._file.unlink(missing_ok=True)


def _keyring_usable() -> bool:
    """False where no real keyring exists (a server, a container, a CI runner)."""
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return False
    # The chainer with nothing to chain is the same as none.
    chained = getattr(backend, "backends", None)
    return chained is None or bool(chained)
