"""A user of organization A can neither see nor touch anything of B, by any route; and
PostgreSQL itself, not only the WHERE clauses, keeps tenants apart."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.conftest import PASSWORD, Organization, invite, join, sign_up
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc
from workpulse.db import UnitOfWork, create_engine


@pytest.fixture
async def other_org(stub: auth_pb2_grpc.AuthServiceAsyncStub) -> Organization:
    admin = await sign_up(stub, organization_name="Other Corp")
    return Organization(admin, await join(stub, admin, "manager"), await join(stub, admin, "employee"))


async def test_no_route_shows_another_organizations_users(
    gateway: httpx.AsyncClient, org: Organization, other_org: Organization
) -> None:
    for caller in (org.admin, org.manager):
        listed = await gateway.get("/users", headers=caller.headers)
        assert listed.status_code == 200
        ids = {u["id"] for u in listed.json()}
        assert ids == {org.admin.id, org.manager.id, org.employee.id}
        for stranger in (other_org.admin, other_org.manager, other_org.employee):
            reply = await gateway.get(f"/users/{stranger.id}", headers=caller.headers)
            assert reply.status_code == 404
            assert reply.json()["message"] == "user not found"


async def test_a_foreign_user_looks_exactly_like_a_missing_one(
    gateway: httpx.AsyncClient, org: Organization, other_org: Organization
) -> None:
    foreign = await gateway.get(f"/users/{other_org.admin.id}", headers=org.admin.headers)
    missing = await gateway.get("/users/00000000-0000-4000-8000-000000000001", headers=org.admin.headers)
    assert (foreign.status_code, foreign.json()["message"]) == (missing.status_code, missing.json()["message"])


async def test_employees_see_only_themselves(gateway: httpx.AsyncClient, org: Organization) -> None:
    listed = await gateway.get("/users", headers=org.employee.headers)
    assert [u["id"] for u in listed.json()] == [org.employee.id]
    assert (await gateway.get(f"/users/{org.employee.id}", headers=org.employee.headers)).status_code == 200
    assert (await gateway.get(f"/users/{org.admin.id}", headers=org.employee.headers)).status_code == 403


async def test_managers_and_admins_see_colleagues(gateway: httpx.AsyncClient, org: Organization) -> None:
    reply = await gateway.get(f"/users/{org.employee.id}", headers=org.manager.headers)
    assert reply.status_code == 200
    assert reply.json()["email"] == org.employee.email


async def test_another_organizations_invites_and_tokens_do_not_work_here(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization, other_org: Organization
) -> None:
    # B's admin cannot log in to A with B's password, nor join A with B's invite.
    login = await gateway.post(
        "/auth/login", json={"email": other_org.admin.email, "password": PASSWORD, "organization_id": org.admin.org}
    )
    assert login.status_code == 401
    issued = await invite(stub, other_org.admin, "admin")
    joined = await gateway.post(
        "/auth/register",
        json={
            "email": issued.email,
            "password": PASSWORD,
            "name": "Intruder",
            "organization_id": org.admin.org,
            "invite_token": issued.token,
        },
    )
    assert joined.status_code == 400
    assert joined.json()["message"].startswith("invite_token"), joined.json()
    # B's refresh token is B's: refreshing it yields B, never A.
    refreshed = await gateway.post("/auth/refresh", json={"refresh_token": other_org.employee.refresh_token})
    assert refreshed.json()["user"]["organization_id"] == other_org.admin.org


async def test_direct_grpc_calls_are_tenant_scoped(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization, other_org: Organization
) -> None:
    listed = await stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=org.admin.md)
    assert {u.organization_id for u in listed.users} == {org.admin.org}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetUser(auth_pb2.GetUserRequest(user_id=other_org.employee.id), metadata=org.admin.md)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


TENANT_TABLES = ("auth.users", "auth.organizations", "auth.invites", "auth.refresh_tokens", "auth.outbox")


async def test_the_runtime_role_sees_only_the_current_tenants_rows(
    database_url: str, owner_engine: AsyncEngine, org: Organization, other_org: Organization
) -> None:
    # The other tenant has rows of its own in every table (else "none of theirs" proves nothing).
    async with owner_engine.connect() as conn:
        for table in TENANT_TABLES:
            column = "id" if table == "auth.organizations" else "organization_id"
            theirs = await conn.execute(
                text(f"select count(*) from {table} where {column} = :b"), {"b": other_org.admin.org}
            )
            assert theirs.scalar_one() > 0, table
    uow = UnitOfWork(create_engine(database_url, pool_size=1))
    try:
        for table in TENANT_TABLES:
            column = "id" if table == "auth.organizations" else "organization_id"
            async with uow.tenant(org.admin.org) as conn:
                # No WHERE clause: only row-level security stands between the tenants.
                seen = {str(r[0]) for r in await conn.execute(text(f"select {column} from {table}"))}
            assert seen == {org.admin.org}, table
            async with uow.unscoped() as conn:
                assert (await conn.execute(text(f"select count(*) from {table}"))).scalar_one() == 0, table
        async with uow.tenant(org.admin.org) as conn:
            users = (await conn.execute(text("select * from auth.users"))).all()
        assert len(users) == 3
    finally:
        await uow.engine.dispose()


async def test_the_runtime_role_cannot_write_into_another_tenant(
    database_url: str, org: Organization, other_org: Organization
) -> None:
    uow = UnitOfWork(create_engine(database_url, pool_size=1))
    try:
        with pytest.raises(DBAPIError, match="row-level security"):
            async with uow.tenant(org.admin.org) as conn:
                await conn.execute(
                    text("insert into auth.organizations (id, name) values (:id, 'Planted')"),
                    {"id": str(uuid.uuid4())},
                )
        with pytest.raises(DBAPIError, match="row-level security"):
            async with uow.tenant(org.admin.org) as conn:
                await conn.execute(
                    text("update auth.users set organization_id = :b where id = :id"),
                    {"b": other_org.admin.org, "id": org.employee.id},
                )
        async with uow.tenant(org.admin.org) as conn:
            touched = await conn.execute(
                text("update auth.users set name = 'Defaced' where id = :id"), {"id": other_org.admin.id}
            )
        assert touched.rowcount == 0
    finally:
        await uow.engine.dispose()


async def test_the_owner_sees_both_tenants(
    owner_engine: AsyncEngine, org: Organization, other_org: Organization
) -> None:
    # The control for the test above: the rows exist, the runtime role just cannot see them.
    async with owner_engine.connect() as conn:
        orgs = {
            str(r[0])
            for r in await conn.execute(
                text("select organization_id from auth.users where organization_id in (:a, :b)"),
                {"a": org.admin.org, "b": other_org.admin.org},
            )
        }
    assert orgs == {org.admin.org, other_org.admin.org}
