"""The refresh token: in the OS keyring when there is one, else in a 0600 file."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors
import pytest
from keyring.backends import fail

from agent.credentials import FILE_NAME, CredentialStore


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring the test owns (the machine has none)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


class LockedKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.PasswordSetError("locked")


@pytest.fixture
def restore_keyring() -> Iterator[None]:
    before = keyring.get_keyring()
    yield
    keyring.set_keyring(before)


def test_without_a_keyring_the_token_is_a_0600_file(tmp_path: Path, restore_keyring: None) -> None:
    keyring.set_keyring(fail.Keyring())
    store = CredentialStore(tmp_path)
    store.save("refresh-1")
    path = tmp_path / FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.load() == "refresh-1"
    assert store.where == f"file {path}"
    store.save("refresh-2")
    assert store.load() == "refresh-2" and stat.S_IMODE(path.stat().st_mode) == 0o600
    store.delete()
    assert store.load() is None and not path.exists()


def test_with_a_keyring_no_file_is_written(tmp_path: Path, restore_keyring: None) -> None:
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    a, b = CredentialStore(tmp_path / "a"), CredentialStore(tmp_path / "b")
    a.save("token-a")
    b.save("token-b")
    assert (a.load(), b.load()) == ("token-a", "token-b")  # one entry per data folder
    assert not (tmp_path / "a" / FILE_NAME).exists()
    assert a.where.startswith("keyring")
    a.delete()
    assert a.load() is None and b.load() == "token-b"


def test_a_keyring_that_refuses_falls_back_to_the_file(tmp_path: Path, restore_keyring: None) -> None:
    keyring.set_keyring(LockedKeyring())
    store = CredentialStore(tmp_path)
    store.save("refresh")
    assert (tmp_path / FILE_NAME).read_text() == "refresh"
    assert store.load() == "refresh"
