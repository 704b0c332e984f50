"""Issue 10: only passwords bcrypt holds whole are set, and log-in never hands bcrypt one
it cannot. bcrypt reads a NUL-terminated key repeated to 72 bytes, so ``ab\\0ab\\0ab`` was
accepted at sign-up and ``ab`` then logged in; ``P\\0P`` still logs in as ``P``."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import bcrypt
import grpc
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.auth.domain import check_new_password
from services.auth.passwords import PasswordHasher
from services.auth.use_cases import BAD_CREDENTIALS
from tests.auth.conftest import PASSWORD, AuthServer, GatewayClient, Organization, invite, unique_email
from tests.support import TokenFactory
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc
from workpulse.errors import InvalidArgument

TOO_LONG = "password: at most 72 bytes (UTF-8)"
HAS_CONTROLS = "password: must not contain control characters"
# 24 three-byte characters: 24 characters, 72 bytes, the most bcrypt reads.
EURO_72_BYTES = "€" * 24
EURO_73_BYTES = "€" * 24 + "a"
AB_NUL_AB_NUL_AB = "ab\x00ab\x00ab"  # eight characters: the minimum length let it in
# NUL, another C0 control (BEL), DEL and a C1 control (NEL), each inside an otherwise good password.
CONTROLS = {"NUL": "\x00", "BEL": "\x07", "DEL": "\x7f", "NEL": "\x85"}
WITH_CONTROLS = [f"correct{c}horse battery" for c in CONTROLS.values()]


@pytest.fixture
def address() -> str:
    """A client address of this test alone. Every in-process auth server counts log-ins per
    address in one Redis, and test_rate_limits allows 127.0.0.1 only a handful."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


@pytest.fixture
async def elsewhere(auth_server: AuthServer, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway, as a client at ``address`` sees it."""
    async with GatewayClient(auth_server.address, address) as client:
        yield client


def _sign_up_body(password: str, email: str = "") -> dict[str, Any]:
    return {"email": email or unique_email(), "password": password, "name": "Ada", "organization_name": "Acme"}


def _join_body(org_id: str, issued: Any, password: str) -> dict[str, Any]:
    return {
        "email": issued.email,
        "password": password,
        "name": "New Person",
        "organization_id": org_id,
        "invite_token": issued.token,
    }


def _log_in_body(email: str, password: str, org_id: str) -> dict[str, Any]:
    return {"email": email, "password": password, "organization_id": org_id}


def test_the_password_rule_names_the_field_and_says_which_limit() -> None:
    check_new_password(EURO_72_BYTES)
    check_new_password("p" * 72)
    for bad, message in [
        (EURO_73_BYTES, TOO_LONG),
        ("p" * 73, TOO_LONG),
        (AB_NUL_AB_NUL_AB, HAS_CONTROLS),
        *((p, HAS_CONTROLS) for p in WITH_CONTROLS),
        ("tab\tseparated", HAS_CONTROLS),
        ("correct horse\x9f", HAS_CONTROLS),  # the last C1 control
    ]:
        with pytest.raises(InvalidArgument) as raised:
            check_new_password(bad)
        assert (raised.value.message, raised.value.field) == (message, "password"), repr(bad)
    # Printable neighbours of the control ranges stay allowed.
    check_new_password("space ~ and\xa0nbsp")


async def test_a_72_byte_password_signs_up_and_logs_in_and_73_bytes_is_refused(elsewhere: httpx.AsyncClient) -> None:
    email = unique_email()
    signed = await elsewhere.post("/auth/register", json=_sign_up_body(EURO_72_BYTES, email))
    assert signed.status_code == 201, signed.text
    org_id = signed.json()["user"]["organization_id"]
    logged = await elsewhere.post("/auth/login", json=_log_in_body(email, EURO_72_BYTES, org_id))
    assert logged.status_code == 200, logged.text
    # One byte more, and its first 72 bytes are exactly the password above: refused, not truncated.
    refused = await elsewhere.post("/auth/register", json=_sign_up_body(EURO_73_BYTES))
    assert refused.status_code == 400, refused.text
    assert refused.json()["message"] == TOO_LONG


async def test_a_73_byte_password_is_refused_over_grpc_naming_the_field(
    stub: auth_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.SignUp(
            auth_pb2.SignUpRequest(email=unique_email(), password=EURO_73_BYTES, name="A", organization_name="O")
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == TOO_LONG
    assert dict(raised.value.trailing_metadata() or ())["wp-field"] == "password"


@pytest.mark.parametrize("password", [AB_NUL_AB_NUL_AB, *WITH_CONTROLS], ids=["ab-NUL-ab-NUL-ab", *CONTROLS])
async def test_control_characters_are_refused_at_sign_up(gateway: httpx.AsyncClient, password: str) -> None:
    reply = await gateway.post("/auth/register", json=_sign_up_body(password))
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"] == HAS_CONTROLS


@pytest.mark.parametrize("password", [AB_NUL_AB_NUL_AB, *WITH_CONTROLS], ids=["ab-NUL-ab-NUL-ab", *CONTROLS])
async def test_control_characters_are_refused_when_accepting_an_invite(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization, password: str
) -> None:
    issued = await invite(stub, org.admin, "employee")
    reply = await gateway.post("/auth/register", json=_join_body(org.admin.org, issued, password))
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"] == HAS_CONTROLS
    # Refused, the invite is still unused: the same person joins with a good password.
    joined = await gateway.post("/auth/register", json=_join_body(org.admin.org, issued, PASSWORD))
    assert joined.status_code == 201, joined.text


async def test_control_characters_are_refused_over_grpc_when_accepting_an_invite(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    issued = await invite(stub, org.admin, "employee")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.RegisterWithInvite(
            auth_pb2.RegisterWithInviteRequest(
                email=issued.email,
                password=AB_NUL_AB_NUL_AB,
                name="New Person",
                organization_id=org.admin.org,
                invite_token=issued.token,
            )
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == HAS_CONTROLS
    assert dict(raised.value.trailing_metadata() or ())["wp-field"] == "password"


async def test_ab_does_not_log_in_after_ab_nul_ab_nul_ab_is_refused(
    elsewhere: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    email = unique_email()
    signed = await elsewhere.post("/auth/register", json=_sign_up_body(AB_NUL_AB_NUL_AB, email))
    assert signed.status_code == 400, signed.text
    # Joining an organization that exists, so log-in has a tenant to look the email up in.
    issued = await invite(stub, org.admin, "employee")
    joined = await elsewhere.post("/auth/register", json=_join_body(org.admin.org, issued, AB_NUL_AB_NUL_AB))
    assert joined.status_code == 400, joined.text
    logged = await elsewhere.post("/auth/login", json=_log_in_body(issued.email, "ab", org.admin.org))
    assert logged.status_code == 401, logged.text
    assert logged.json()["message"] == BAD_CREDENTIALS
    # Text no entry point accepts is refused as such before any account is looked up.
    logged = await elsewhere.post("/auth/login", json=_log_in_body(issued.email, AB_NUL_AB_NUL_AB, org.admin.org))
    assert logged.status_code == 400, logged.text
    assert logged.json()["message"] == HAS_CONTROLS


@pytest.mark.parametrize(
    "attempt",
    # bcrypt itself would raise on the long ones, and would match the real password's hash
    # for PASSWORD-NUL-PASSWORD: the key is read up to its NUL, repeated.
    [EURO_73_BYTES, "p" * 200],
    ids=["73 bytes", "200 bytes"],
)
async def test_log_in_with_a_password_bcrypt_cannot_hold_answers_like_a_wrong_password(
    elsewhere: httpx.AsyncClient,
    stub: auth_pb2_grpc.AuthServiceAsyncStub,
    org: Organization,
    tokens: TokenFactory,
    address: str,
    attempt: str,
) -> None:
    email, org_id = org.admin.email, org.admin.org
    wrong = await elsewhere.post("/auth/login", json=_log_in_body(email, "a wrong password", org_id))
    refused = await elsewhere.post("/auth/login", json=_log_in_body(email, attempt, org_id))
    assert wrong.status_code == refused.status_code == 401, refused.text
    assert wrong.json()["message"] == refused.json()["message"] == BAD_CREDENTIALS
    assert set(wrong.json()) == set(refused.json())

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LogIn(
            auth_pb2.LogInRequest(email=email, password=attempt, organization_id=org_id),
            # As the gateway calls: on behalf of this test's own client address.
            metadata=(("x-client-address", address), ("x-service-authorization", tokens.service("gateway"))),
        )
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == BAD_CREDENTIALS
    assert "wp-field" not in dict(raised.value.trailing_metadata() or ())
    # The real password still works: the refusals counted as failed attempts, nothing more.
    logged = await elsewhere.post("/auth/login", json=_log_in_body(email, PASSWORD, org_id))
    assert logged.status_code == 200, logged.text


@pytest.mark.parametrize(
    "attempt",
    # bcrypt would match the real password's hash for PASSWORD-NUL-PASSWORD: the key is read
    # up to its NUL, repeated. Control characters are refused at every entry point (issue
    # 10), so such a log-in is a 400 naming the field, before any account is looked up: it
    # says nothing about the account, and never reaches bcrypt.
    [f"{PASSWORD}\x00{PASSWORD}", AB_NUL_AB_NUL_AB, f"{PASSWORD}\x85"],
    ids=["password-NUL-password", "ab-NUL-ab-NUL-ab", "password-NEL"],
)
async def test_log_in_with_control_characters_is_refused_before_any_account_is_looked_up(
    elsewhere: httpx.AsyncClient,
    stub: auth_pb2_grpc.AuthServiceAsyncStub,
    org: Organization,
    tokens: TokenFactory,
    address: str,
    attempt: str,
) -> None:
    email, org_id = org.admin.email, org.admin.org
    for who in (email, "nobody@example.com"):
        refused = await elsewhere.post("/auth/login", json=_log_in_body(who, attempt, org_id))
        assert refused.status_code == 400, refused.text
        assert refused.json()["message"] == HAS_CONTROLS
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LogIn(
            auth_pb2.LogInRequest(email=email, password=attempt, organization_id=org_id),
            metadata=(("x-client-address", address), ("x-service-authorization", tokens.service("gateway"))),
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == HAS_CONTROLS
    logged = await elsewhere.post("/auth/login", json=_log_in_body(email, PASSWORD, org_id))
    assert logged.status_code == 200, logged.text


async def test_a_hash_stored_before_the_rule_is_never_matched_through_a_nul(
    elsewhere: httpx.AsyncClient, org: Organization, owner_engine: AsyncEngine
) -> None:
    # What sign-up stored for "ab\0ab\0ab" before the fix: the hash bcrypt reads as "ab".
    legacy = bcrypt.hashpw(AB_NUL_AB_NUL_AB.encode(), bcrypt.gensalt(4)).decode()
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("update auth.users set password_hash = :hash where id = :id"), {"hash": legacy, "id": org.employee.id}
        )
    email, org_id = org.employee.email, org.employee.org
    # Each of these matched that hash once; now none reaches bcrypt. ("ab" still does: the
    # hash cannot tell it from the password it was made of, so such accounts need a reset.)
    for attempt in (AB_NUL_AB_NUL_AB, "ab\x00ab", "ab\x00ab\x00ab\x00ab"):
        logged = await elsewhere.post("/auth/login", json=_log_in_body(email, attempt, org_id))
        assert logged.status_code == 400, (attempt, logged.text)
        assert logged.json()["message"] == HAS_CONTROLS


async def test_the_hasher_never_feeds_bcrypt_what_it_cannot_hold() -> None:
    hasher = await asyncio.to_thread(PasswordHasher, 4)
    stored_ab = await hasher.hash("ab")
    assert not await hasher.verify("ab\x00ab\x00ab", stored_ab)
    stored_72 = await hasher.hash(EURO_72_BYTES)
    assert await hasher.verify(EURO_72_BYTES, stored_72)
    # bcrypt itself would raise on 73 bytes; the hasher says no, as for a wrong password.
    assert not await hasher.verify(EURO_73_BYTES, stored_72)
    for unstorable, message in [(EURO_73_BYTES, TOO_LONG), (AB_NUL_AB_NUL_AB, HAS_CONTROLS)]:
        with pytest.raises(InvalidArgument) as raised:
            await hasher.hash(unstorable)
        assert raised.value.message == message


async def test_a_password_bcrypt_cannot_hold_costs_the_same_bcrypt_work_as_a_wrong_one() -> None:
    hasher = await asyncio.to_thread(PasswordHasher, 10)  # ~50 ms per check: well above timer noise
    stored = await hasher.hash("the real password")

    async def timed(password: str) -> float:
        started = time.perf_counter()
        assert not await hasher.verify(password, stored)
        return time.perf_counter() - started

    wrong = statistics.median([await timed("a wrong password") for _ in range(5)])
    unholdable = statistics.median([await timed(EURO_73_BYTES) for _ in range(5)])
    assert 0.5 < unholdable / wrong < 2.0, (unholdable, wrong)
