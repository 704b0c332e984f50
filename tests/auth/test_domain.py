"""Unit tests of the identity rules and token helpers: no I/O."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

import pytest

from services.auth.domain import (
    Invite,
    Role,
    check_new_password,
    check_timezone,
    clean_name,
    client_host,
    invite_ttl_hours,
    may_invite,
    normalize_email,
    parse_uuid,
)
from services.auth.passwords import PasswordHasher
from services.auth.tokens import digest, new_refresh_token, refresh_token_tenant
from workpulse.errors import InvalidArgument, PermissionDenied

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ORG = "3f2b8c1e-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("inviter", "invited", "allowed"),
    [
        (Role.ADMIN, Role.ADMIN, True),
        (Role.ADMIN, Role.MANAGER, True),
        (Role.ADMIN, Role.EMPLOYEE, True),
        (Role.MANAGER, Role.ADMIN, False),
        (Role.MANAGER, Role.MANAGER, True),
        (Role.MANAGER, Role.EMPLOYEE, True),
        (Role.EMPLOYEE, Role.EMPLOYEE, False),
    ],
)
def test_who_may_invite_whom(inviter: Role, invited: Role, allowed: bool) -> None:
    if allowed:
        may_invite(inviter, invited)
    else:
        with pytest.raises(PermissionDenied):
            may_invite(inviter, invited)


def _invite(**changes: object) -> Invite:
    fields: dict[str, object] = {
        "id": "i",
        "organization_id": ORG,
        "email": "new@example.com",
        "role": Role.EMPLOYEE,
        "created_by": "u",
        "expires_at": NOW + timedelta(hours=1),
        "used_at": None,
    }
    fields.update(changes)
    return Invite(**fields)  # type: ignore[arg-type]


def test_an_invite_is_redeemable_once_by_its_email_before_it_expires() -> None:
    _invite().check_redeemable("new@example.com", NOW)
    cases = {
        "another email": (_invite(), "other@example.com"),
        "used": (_invite(used_at=NOW), "new@example.com"),
        "expired": (_invite(expires_at=NOW), "new@example.com"),
    }
    for name, (invite, email) in cases.items():
        with pytest.raises(InvalidArgument) as raised:
            invite.check_redeemable(email, NOW)
        assert raised.value.field == "invite_token", name


def test_emails_are_trimmed_and_lower_cased() -> None:
    assert normalize_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"


@pytest.mark.parametrize("bad", ["", "plain", "a@b", "a@@b.com", "a b@c.com", "@example.com", "a@example.com\x00"])
def test_bad_emails_name_the_field(bad: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        normalize_email(bad)
    assert raised.value.field == "email"


def test_passwords_between_8_characters_and_72_bytes() -> None:
    check_new_password("12345678")
    check_new_password("p" * 72)
    for bad in ("1234567", "p" * 73, "é" * 37):
        with pytest.raises(InvalidArgument):
            check_new_password(bad)


def test_names_timezones_uuids_and_invite_lifetimes() -> None:
    assert clean_name("  Ada  ") == "Ada"
    assert check_timezone("") == "UTC"
    assert check_timezone("America/New_York") == "America/New_York"
    assert parse_uuid(ORG.upper(), field="x") == ORG
    assert invite_ttl_hours(0, 72) == 72
    for call in (
        lambda: clean_name(""),
        lambda: check_timezone("../../etc/passwd"),
        lambda: parse_uuid("1234", field="user_id"),
        lambda: invite_ttl_hours(721, 72),
    ):
        with pytest.raises(InvalidArgument):
            call()


def test_refresh_tokens_name_their_tenant_and_are_stored_as_digests() -> None:
    token = new_refresh_token(ORG)
    assert refresh_token_tenant(token) == ORG
    assert digest(token) != token and len(digest(token)) == 64
    assert new_refresh_token(ORG) != token
    for bad in ("", "nodot", f"{ORG}.short", "not-a-uuid." + "x" * 43):
        assert refresh_token_tenant(bad) is None


@pytest.mark.parametrize(
    ("peer", "host"),
    [("ipv4:10.1.2.3:5555", "10.1.2.3"), ("ipv6:[::1]:5555", "::1"), ("203.0.113.9", "203.0.113.9"), ("", "unknown")],
)
def test_rate_limits_count_hosts_not_connections(peer: str, host: str) -> None:
    assert client_host(peer) == host


async def test_an_unknown_user_costs_the_same_bcrypt_work_as_a_wrong_password() -> None:
    hasher = await asyncio.to_thread(PasswordHasher, 10)  # ~50 ms per check: well above timer noise
    stored = await hasher.hash("the real password")
    assert stored.startswith("$2b$10$")
    assert await hasher.verify("the real password", stored)

    async def timed(hashed: str | None) -> float:
        started = time.perf_counter()
        assert not await hasher.verify("a wrong password", hashed)
        return time.perf_counter() - started

    unknown = statistics.median([await timed(None) for _ in range(5)])
    wrong = statistics.median([await timed(stored) for _ in range(5)])
    assert 0.5 < unknown / wrong < 2.0, (unknown, wrong)
