"""Single use holds under concurrency: an invite redeemed by racing requests admits one
user, and every loser is told the invite is spent; a refresh token presented twice at once
rotates once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.conftest import PASSWORD, Organization, invite
from tests.support import eventually
from workpulse.auth.v1 import auth_pb2_grpc


def _redemption(issued: Any, org: Organization) -> dict[str, str]:
    """The sign-up body of the invitee redeeming ``issued``."""
    return {
        "email": issued.email,
        "password": PASSWORD,
        "name": "Racer",
        "organization_id": org.admin.org,
        "invite_token": issued.token,
    }


async def test_racing_redemptions_of_one_invite_admit_one_user(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    issued = await invite(stub, org.admin, "employee")
    body = _redemption(issued, org)
    replies = await asyncio.gather(*(gateway.post("/auth/register", json=body) for _ in range(8)))
    codes = sorted(r.status_code for r in replies)
    assert codes.count(201) == 1, [r.text for r in replies]
    assert set(codes) <= {201, 400, 409}
    listed = await gateway.get("/users", headers=org.admin.headers)
    assert sum(u["email"] == issued.email for u in listed.json()) == 1


async def _waiting_on_locks(owner: AsyncEngine, like: str) -> int:
    """How many backends of this database wait on a lock in a statement like ``like``."""
    async with owner.connect() as conn:
        found = await conn.execute(
            text(
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and wait_event_type = 'Lock' and query like :like"
            ),
            {"like": like},
        )
        return int(found.scalar_one())


async def test_redemptions_racing_the_first_one_are_told_the_invite_is_used(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization, owner_engine: AsyncEngine
) -> None:
    """The losers of a race meet the invite spent (400 on invite_token), as a late comer
    does, not a taken email (409): the invite row is locked until the first redemption
    commits, and its use is checked after the lock is granted.

    The race is made certain, not likely: the test holds the outbox table, so the first
    redemption stops just before its commit, with the invite row locked and the user
    inserted; the others start only then and are let go together."""
    issued = await invite(stub, org.admin, "employee")
    body = _redemption(issued, org)
    async with owner_engine.connect() as gate:
        await gate.execute(text("lock table auth.outbox in share mode"))
        first = asyncio.create_task(gateway.post("/auth/register", json=body))
        await eventually(lambda: _waiting_on_locks(owner_engine, "insert into auth.outbox%"), what="first at the gate")
        others = [asyncio.create_task(gateway.post("/auth/register", json=body)) for _ in range(4)]

        async def all_waiting() -> bool:
            invites = await _waiting_on_locks(owner_engine, "%auth.invites%")
            users = await _waiting_on_locks(owner_engine, "insert into auth.users%")
            return invites + users == len(others)

        await eventually(all_waiting, what="the others waiting on the first")
        await gate.rollback()
    assert (await first).status_code == 201
    for reply in await asyncio.gather(*others):
        assert reply.status_code == 400, reply.text
        assert reply.json()["message"] == "invite_token: this invite has already been used"
    listed = await gateway.get("/users", headers=org.admin.headers)
    assert sum(u["email"] == issued.email for u in listed.json()) == 1


async def test_racing_refreshes_of_one_token_rotate_it_once(gateway: httpx.AsyncClient, org: Organization) -> None:
    replies = await asyncio.gather(
        *(gateway.post("/auth/refresh", json={"refresh_token": org.manager.refresh_token}) for _ in range(4))
    )
    codes = sorted(r.status_code for r in replies)
    assert codes == [200, 401, 401, 401], [r.text for r in replies]
    # The losers presented a spent token: reuse, so the family (including the winner's new token) is revoked.
    winner = next(r for r in replies if r.status_code == 200).json()
    again = await gateway.post("/auth/refresh", json={"refresh_token": winner["refresh_token"]})
    assert again.status_code == 401


async def test_the_openapi_document_lists_the_identity_routes(gateway: httpx.AsyncClient) -> None:
    paths = (await gateway.get("/openapi.json")).json()["paths"]
    for path in ("/auth/register", "/auth/login", "/auth/refresh", "/auth/logout", "/me", "/users", "/invites"):
        assert path in paths, path
    schema = paths["/auth/register"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"email", "password", "name"} <= set(schema["required"])
