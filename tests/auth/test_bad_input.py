"""Bad input gets a precise 4xx naming the field, never a 500."""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
import pytest

from tests.auth.conftest import PASSWORD, Organization
from tests.support import TokenFactory
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc

SIGN_UP = {"email": "ok@example.com", "password": PASSWORD, "name": "Ok", "organization_name": "Ok Org"}
ORG = "00000000-0000-4000-8000-000000000000"


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {**base, **changes}
    return {k: v for k, v in body.items() if v is not ...}


REGISTER_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("short password", _with(SIGN_UP, password="short"), "password:"),
    ("password over 72 bytes", _with(SIGN_UP, password="é" * 37), "password:"),
    ("bad email", _with(SIGN_UP, email="not-an-email"), "email:"),
    ("email with a space", _with(SIGN_UP, email="a b@example.com"), "email:"),
    ("email with NUL", _with(SIGN_UP, email="a\x00b@example.com"), "email:"),
    ("email too long", _with(SIGN_UP, email="a" * 250 + "@example.com"), "email:"),
    ("empty name", _with(SIGN_UP, name="   "), "name:"),
    ("name too long", _with(SIGN_UP, name="n" * 101), "name:"),
    ("name with control characters", _with(SIGN_UP, name="bad\x07name"), "name:"),
    ("empty organization name", _with(SIGN_UP, organization_name=""), "organization_name:"),
    ("unknown time zone", _with(SIGN_UP, timezone="Mars/Olympus"), "timezone:"),
    ("email of the wrong type", _with(SIGN_UP, email=123), "email:"),
    ("password of the wrong type", _with(SIGN_UP, password=["x" * 10]), "password:"),
    ("name of the wrong type", _with(SIGN_UP, name=None), "name:"),
    ("missing email", _with(SIGN_UP, email=...), "email:"),
    ("missing password", _with(SIGN_UP, password=...), "password:"),
    ("unknown role", _with(SIGN_UP, role="superuser"), "role:"),
    ("lone surrogate", _with(SIGN_UP, name="\ud800"), "name:"),
    ("neither organization_name nor organization_id", _with(SIGN_UP, organization_name=...), "organization_id:"),
    ("both create and join", _with(SIGN_UP, organization_id=ORG, invite_token="t"), "organization_name:"),
    (
        "bad organization UUID",
        _with(SIGN_UP, organization_name=..., organization_id="nope", invite_token="t"),
        "organization_id:",
    ),
]


@pytest.mark.parametrize(("case", "body", "field"), REGISTER_CASES, ids=[c[0] for c in REGISTER_CASES])
async def test_register_rejects_bad_fields_by_name(
    gateway: httpx.AsyncClient, case: str, body: dict[str, Any], field: str
) -> None:
    # Serialized with ASCII escapes, so a lone surrogate travels as the JSON text "\ud800".
    raw = json.dumps(body)
    reply = await gateway.post("/auth/register", content=raw, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"].startswith(field), reply.json()
    assert reply.json()["path"] == "/auth/register"


LOGIN_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "bad organization UUID",
        {"email": "a@example.com", "password": PASSWORD, "organization_id": "x"},
        "organization_id:",
    ),
    (
        "organization of the wrong type",
        {"email": "a@example.com", "password": PASSWORD, "organization_id": 7},
        "organization_id:",
    ),
    ("missing organization", {"email": "a@example.com", "password": PASSWORD}, "organization_id:"),
    ("bad email", {"email": "nope", "password": PASSWORD, "organization_id": ORG}, "email:"),
    ("empty password", {"email": "a@example.com", "password": "", "organization_id": ORG}, "password:"),
    # A password over 72 bytes is not a bad field at log-in but a wrong password (401):
    # see test_passwords_bcrypt_holds.py.
]


@pytest.mark.parametrize(("case", "body", "field"), LOGIN_CASES, ids=[c[0] for c in LOGIN_CASES])
async def test_log_in_rejects_bad_fields_by_name(
    gateway: httpx.AsyncClient, case: str, body: dict[str, Any], field: str
) -> None:
    reply = await gateway.post("/auth/login", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"].startswith(field), reply.json()


@pytest.mark.parametrize("path", ["/auth/register", "/auth/login", "/auth/refresh", "/auth/logout"])
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"\xff\xfe", "malformed"),
    ],
)
async def test_malformed_bodies_are_400(gateway: httpx.AsyncClient, path: str, raw: bytes, message: str) -> None:
    reply = await gateway.post(path, content=raw, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["message"]


async def test_non_json_content_type_is_415(gateway: httpx.AsyncClient) -> None:
    reply = await gateway.post(
        "/auth/login", content=b"email=a", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert reply.status_code == 415


async def test_an_oversized_body_is_413(gateway: httpx.AsyncClient) -> None:
    huge = {**SIGN_UP, "name": "x" * (2 * 1024 * 1024)}
    reply = await gateway.post("/auth/register", json=huge)
    assert reply.status_code == 413
    assert "exceeds" in reply.json()["message"]


async def test_bad_user_id_is_400(gateway: httpx.AsyncClient, org: Organization) -> None:
    reply = await gateway.get("/users/not-a-uuid", headers=org.admin.headers)
    assert reply.status_code == 400
    assert reply.json()["message"].startswith("user_id:")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page_size=abc", "page_size:"),
        ("page_size=-1", "page_size:"),
        ("page_size=100000", "page_size:"),
        ("page_size=99999999999999999999", "page_size:"),
        ("page_token=bogus!", "page_token:"),
    ],
)
async def test_bad_paging_is_400(gateway: httpx.AsyncClient, org: Organization, query: str, field: str) -> None:
    reply = await gateway.get(f"/users?{query}", headers=org.admin.headers)
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"].startswith(field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "x@example.com", "role": "owner"}, "role:"),
        ({"email": "x@example.com"}, "role:"),
        ({"email": "nope", "role": "employee"}, "email:"),
        ({"email": "x@example.com", "role": "employee", "ttl_hours": "5"}, "ttl_hours:"),
        ({"email": "x@example.com", "role": "employee", "ttl_hours": -1}, "ttl_hours:"),
        ({"email": "x@example.com", "role": "employee", "ttl_hours": 721}, "ttl_hours:"),
        ({"email": "x@example.com", "role": "employee", "ttl_hours": 10**12}, "ttl_hours:"),
        ({"email": "x@example.com", "role": "employee", "ttl_hours": 1.5}, "ttl_hours:"),
    ],
)
async def test_bad_invites_are_400(
    gateway: httpx.AsyncClient, org: Organization, body: dict[str, Any], field: str
) -> None:
    reply = await gateway.post("/invites", json=body, headers=org.admin.headers)
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"].startswith(field)


async def test_paging_through_users(gateway: httpx.AsyncClient, org: Organization) -> None:
    first = await gateway.get("/users?page_size=2", headers=org.admin.headers)
    assert first.status_code == 200
    assert len(first.json()) == 2
    token = first.headers["x-next-page-token"]
    rest = await gateway.get("/users", params={"page_size": "2", "page_token": token}, headers=org.admin.headers)
    assert len(rest.json()) == 1
    assert "x-next-page-token" not in rest.headers
    seen = [u["id"] for u in first.json() + rest.json()]
    assert sorted(seen) == sorted([org.admin.id, org.manager.id, org.employee.id])


async def test_log_in_ignores_email_case_and_surrounding_spaces(gateway: httpx.AsyncClient, org: Organization) -> None:
    reply = await gateway.post(
        "/auth/login",
        json={"email": f"  {org.admin.email.upper()} ", "password": PASSWORD, "organization_id": org.admin.org},
    )
    assert reply.status_code == 200
    assert reply.json()["user"]["email"] == org.admin.email


GRPC_CASES: list[tuple[str, str, Any, str]] = [
    (
        "SignUp",
        "short password",
        auth_pb2.SignUpRequest(email="a@example.com", password="short", name="A", organization_name="O"),
        "password",
    ),
    (
        "SignUp",
        "bad email",
        auth_pb2.SignUpRequest(email="a", password=PASSWORD, name="A", organization_name="O"),
        "email",
    ),
    (
        "SignUp",
        "bad time zone",
        auth_pb2.SignUpRequest(
            email="a@example.com", password=PASSWORD, name="A", organization_name="O", timezone="Nowhere/Else"
        ),
        "timezone",
    ),
    (
        "LogIn",
        "bad organization UUID",
        auth_pb2.LogInRequest(email="a@example.com", password=PASSWORD, organization_id="x"),
        "organization_id",
    ),
    (
        "RegisterWithInvite",
        "no invite",
        auth_pb2.RegisterWithInviteRequest(email="a@example.com", password=PASSWORD, name="A", organization_id=ORG),
        "invite_token",
    ),
]


@pytest.mark.parametrize(
    ("method", "case", "request_", "field"), GRPC_CASES, ids=[f"{c[0]}: {c[1]}" for c in GRPC_CASES]
)
async def test_grpc_names_the_bad_field_in_a_trailer(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, method: str, case: str, request_: Any, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(stub, method)(request_)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(raised.value.trailing_metadata() or ())["wp-field"] == field
    assert (raised.value.details() or "").startswith(field), raised.value.details()


async def test_a_service_identity_is_not_a_user_of_any_organization(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, tokens: TokenFactory
) -> None:
    md = (("authorization", f"Bearer {tokens.service('scheduler')}"),)
    for call in (
        stub.GetUser(auth_pb2.GetUserRequest(), metadata=md),
        stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=md),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("path", ["/auth/refresh", "/auth/logout"])
@pytest.mark.parametrize(
    "body",
    [{}, {"refresh_token": None}, {"refresh_token": 123}, {"refresh_token": ["a.b"]}, {"token": "a.b"}],
    ids=["missing", "null", "a number", "a list", "under another name"],
)
async def test_refresh_and_log_out_name_a_missing_or_mistyped_token(
    gateway: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    reply = await gateway.post(path, json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"].startswith("refresh_token:"), reply.json()
    assert reply.json()["path"] == path


@pytest.mark.parametrize(
    "token",
    ["", "garbage", f"{ORG}.{'A' * 43}", f"not-a-uuid.{'A' * 43}", f"{ORG}.short"],
    ids=["empty", "garbage", "made up", "no tenant", "short secret"],
)
async def test_refresh_with_a_token_we_never_issued_is_401(gateway: httpx.AsyncClient, token: str) -> None:
    reply = await gateway.post("/auth/refresh", json={"refresh_token": token})
    assert reply.status_code == 401, reply.text
    assert reply.json()["message"] == "invalid refresh token"


async def test_log_out_with_a_token_we_never_issued_revokes_nothing(
    gateway: httpx.AsyncClient, org: Organization
) -> None:
    # Logging out is idempotent (204 for unknown tokens), and harms nobody else's session.
    for token in ("", "garbage", f"{org.admin.org}.{'A' * 43}"):
        reply = await gateway.post("/auth/logout", json={"refresh_token": token})
        assert reply.status_code == 204, reply.text
    refreshed = await gateway.post("/auth/refresh", json={"refresh_token": org.admin.refresh_token})
    assert refreshed.status_code == 200, refreshed.text
