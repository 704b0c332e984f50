"""Housekeeping deletes refresh tokens and invites long expired, and nothing still useful."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.auth import housekeeping
from tests.auth.conftest import Organization, invite
from workpulse.auth.v1 import auth_pb2_grpc
from workpulse.db import create_engine
from workpulse.postgres import MAINTENANCE_ROLE


@pytest.fixture
async def maintenance(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, role=MAINTENANCE_ROLE, pool_size=1)
    yield engine
    await engine.dispose()


async def test_purge_removes_only_long_expired_rows(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization, owner_engine: AsyncEngine, maintenance: AsyncEngine
) -> None:
    old_invite, fresh_invite = await invite(stub, org.admin, "employee"), await invite(stub, org.admin, "employee")
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("update auth.refresh_tokens set expires_at = now() - interval '8 days' where user_id = :u"),
            {"u": org.employee.id},
        )
        await conn.execute(
            text("update auth.invites set expires_at = now() - interval '8 days' where id = :id"), {"id": old_invite.id}
        )
    purged = await housekeeping.purge(maintenance, retention_days=7)
    assert purged["refresh_tokens"] >= 1 and purged["invites"] >= 1
    async with owner_engine.connect() as conn:
        tokens_left = {
            str(r[0])
            for r in await conn.execute(
                text("select user_id from auth.refresh_tokens where organization_id = :o"), {"o": org.admin.org}
            )
        }
        invites_left = {
            str(r[0])
            for r in await conn.execute(
                text("select id from auth.invites where organization_id = :o"), {"o": org.admin.org}
            )
        }
    assert org.employee.id not in tokens_left
    assert {org.admin.id, org.manager.id} <= tokens_left
    assert old_invite.id not in invites_left
    assert fresh_invite.id in invites_left
