"""Nobody chooses their own role; joining takes an invite that is single-use, expires and
is bound to its email; managers cannot invite admins; employees cannot invite."""

from __future__ import annotations

import grpc
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.conftest import PASSWORD, Organization, invite, sign_up, unique_email
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc


def _join_body(org_id: str, token: str, email: str, **extra: object) -> dict[str, object]:
    return {
        "email": email,
        "password": PASSWORD,
        "name": "New Person",
        "organization_id": org_id,
        "invite_token": token,
        **extra,
    }


async def test_asking_for_a_role_grants_nothing(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    issued = await invite(stub, org.admin, "employee")
    joined = await gateway.post(
        "/auth/register", json=_join_body(org.admin.org, issued.token, issued.email, role="admin")
    )
    assert joined.status_code == 201, joined.text
    assert joined.json()["user"]["role"] == "employee"
    me = await gateway.get("/me", headers={"authorization": f"Bearer {joined.json()['access_token']}"})
    assert me.json()["role"] == "employee"
    # The employee's token cannot do what an admin could.
    denied = await gateway.post(
        "/invites",
        json={"email": unique_email(), "role": "employee"},
        headers={"authorization": f"Bearer {joined.json()['access_token']}"},
    )
    assert denied.status_code == 403


async def test_sign_up_with_a_role_still_makes_only_the_first_admin_of_a_new_organization(
    gateway: httpx.AsyncClient, org: Organization
) -> None:
    reply = await gateway.post(
        "/auth/register",
        json={
            "email": unique_email(),
            "password": PASSWORD,
            "name": "Sneaky",
            "organization_name": "Elsewhere",
            "role": "admin",
        },
    )
    assert reply.status_code == 201
    assert reply.json()["user"]["organization_id"] != org.admin.org


@pytest.mark.parametrize("token", [None, ""])
async def test_no_organization_is_joined_without_an_invite(
    gateway: httpx.AsyncClient, org: Organization, token: str | None
) -> None:
    body = _join_body(org.admin.org, token or "", unique_email(), role="employee")
    if token is None:
        del body["invite_token"]
    reply = await gateway.post("/auth/register", json=body)
    assert reply.status_code == 400
    assert reply.json()["message"].startswith("invite_token:")


async def test_a_made_up_invite_token_is_refused(gateway: httpx.AsyncClient, org: Organization) -> None:
    reply = await gateway.post("/auth/register", json=_join_body(org.admin.org, "made-up-token", unique_email()))
    assert reply.status_code == 400
    assert reply.json()["message"].startswith("invite_token:")


async def test_an_invite_is_single_use(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    issued = await invite(stub, org.manager, "employee")
    first = await gateway.post("/auth/register", json=_join_body(org.admin.org, issued.token, issued.email))
    assert first.status_code == 201
    again = await gateway.post("/auth/register", json=_join_body(org.admin.org, issued.token, issued.email))
    assert again.status_code == 400
    assert "already been used" in again.json()["message"]


async def test_an_invite_expires(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization, owner_engine: AsyncEngine
) -> None:
    issued = await invite(stub, org.admin, "manager")
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("update auth.invites set expires_at = now() - interval '1 second' where id = :id"), {"id": issued.id}
        )
    reply = await gateway.post("/auth/register", json=_join_body(org.admin.org, issued.token, issued.email))
    assert reply.status_code == 400
    assert "expired" in reply.json()["message"]


async def test_an_invite_is_bound_to_its_email(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    issued = await invite(stub, org.admin, "employee")
    reply = await gateway.post("/auth/register", json=_join_body(org.admin.org, issued.token, unique_email()))
    assert reply.status_code == 400
    # The right email (in another case) still works afterwards: the failed attempt spent nothing.
    ok = await gateway.post("/auth/register", json=_join_body(org.admin.org, issued.token, issued.email.upper()))
    assert ok.status_code == 201


async def test_an_invite_only_works_in_its_own_organization(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    other = await sign_up(stub)
    issued = await invite(stub, org.admin, "admin")
    reply = await gateway.post("/auth/register", json=_join_body(other.org, issued.token, issued.email))
    assert reply.status_code == 400


async def test_who_may_invite_whom(gateway: httpx.AsyncClient, org: Organization) -> None:
    async def create(inviter_headers: dict[str, str], role: str) -> httpx.Response:
        return await gateway.post("/invites", json={"email": unique_email(), "role": role}, headers=inviter_headers)

    for role in ("admin", "manager", "employee"):
        assert (await create(org.admin.headers, role)).status_code == 201
    assert (await create(org.manager.headers, "admin")).status_code == 403
    assert (await create(org.manager.headers, "manager")).status_code == 201
    assert (await create(org.manager.headers, "employee")).status_code == 201
    for role in ("admin", "manager", "employee"):
        assert (await create(org.employee.headers, role)).status_code == 403
    assert (await create({}, "employee")).status_code == 401


async def test_invite_reply_and_stored_token_hash(
    gateway: httpx.AsyncClient, org: Organization, owner_engine: AsyncEngine
) -> None:
    email = unique_email()
    reply = await gateway.post("/invites", json={"email": email, "role": "manager"}, headers=org.admin.headers)
    assert reply.status_code == 201
    body = reply.json()
    assert set(body) == {"id", "organization_id", "email", "role", "token", "expires_at", "workspace"}
    assert (body["email"], body["role"], body["organization_id"]) == (email, "manager", org.admin.org)
    async with owner_engine.connect() as conn:
        stored = (
            await conn.execute(
                text("select token_hash, expires_at - now() from auth.invites where id = :id"), {"id": body["id"]}
            )
        ).one()
    assert body["token"] not in stored[0]
    assert 71 * 3600 < stored[1].total_seconds() <= 72 * 3600


async def test_inviting_an_existing_member_is_a_conflict(gateway: httpx.AsyncClient, org: Organization) -> None:
    reply = await gateway.post(
        "/invites", json={"email": org.employee.email, "role": "employee"}, headers=org.admin.headers
    )
    assert reply.status_code == 409


async def test_registering_twice_with_one_email_is_a_conflict(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    first = await invite(stub, org.admin, "employee")
    second = await invite(stub, org.admin, "employee", email=first.email)
    assert (
        await gateway.post("/auth/register", json=_join_body(org.admin.org, first.token, first.email))
    ).status_code == 201
    reply = await gateway.post("/auth/register", json=_join_body(org.admin.org, second.token, second.email))
    assert reply.status_code == 409
    assert reply.json()["message"].startswith("email:")


async def test_invite_over_grpc_needs_a_role(stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateInvite(auth_pb2.CreateInviteRequest(email=unique_email()), metadata=org.admin.md)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(raised.value.trailing_metadata() or ())["wp-field"] == "role"
