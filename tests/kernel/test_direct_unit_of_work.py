"""UnitOfWork.direct, the hot paths' transaction (real PostgreSQL, runtime role): it is
tenant-scoped like tenant(), commits or rolls back whole, speaks SQLAlchemy's error
vocabulary, and never hands a broken connection back to the pool."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import get_args

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from workpulse.db import UnitOfWork, create_engine, direct_switch_tenant
from workpulse.settings import TenantSetting

INSERT = "insert into sessions.projects (organization_id, id, name) values (%s, %s, %s)"
NAMES = "select name from sessions.projects order by name"


@pytest.fixture(params=get_args(TenantSetting))
async def uow(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[UnitOfWork]:
    engine = create_engine(database_url, pool_size=1, max_overflow=0, tenant_setting=request.param)
    yield UnitOfWork(engine)
    await engine.dispose()


async def _names(owner: AsyncEngine, org: str) -> list[str]:
    async with owner.connect() as conn:
        rows = await conn.execute(
            text("select name from sessions.projects where organization_id = :org order by name"), {"org": org}
        )
        return [str(r[0]) for r in rows]


async def test_a_direct_transaction_sees_and_writes_only_its_tenant(uow: UnitOfWork, owner_engine: AsyncEngine) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    async with uow.direct(a) as conn:
        await conn.execute(INSERT, [a, str(uuid.uuid4()), "a-1"])
    async with uow.direct(b) as conn:
        await conn.execute(INSERT, [b, str(uuid.uuid4()), "b-1"])
        seen = await (await conn.execute(NAMES)).fetchall()
        assert seen == [("b-1",)]
        with pytest.raises(Exception, match="row-level security"):
            async with conn.transaction():  # a savepoint: the policy refuses the other tenant's row
                await conn.execute(INSERT, [a, str(uuid.uuid4()), "smuggled"])
        await direct_switch_tenant(conn, a)
        assert await (await conn.execute(NAMES)).fetchall() == [("a-1",)]
    async with uow.direct(None) as conn:
        assert await (await conn.execute(NAMES)).fetchall() == []
    assert await _names(owner_engine, a) == ["a-1"]
    assert await _names(owner_engine, b) == ["b-1"]


async def test_a_failure_rolls_back_everything_and_surfaces_as_sqlalchemys_error(
    uow: UnitOfWork, owner_engine: AsyncEngine
) -> None:
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    with pytest.raises(IntegrityError):
        async with uow.direct(org) as conn:
            await conn.execute(INSERT, [org, str(uuid.uuid4()), "kept?"])
            await conn.execute(INSERT, [org, project, "first"])
            await conn.execute(INSERT, [org, project, "same id"])
    with pytest.raises(RuntimeError):
        async with uow.direct(org) as conn:
            await conn.execute(INSERT, [org, str(uuid.uuid4()), "before a bug"])
            raise RuntimeError("the caller failed")
    assert await _names(owner_engine, org) == []
    # The one pooled connection is usable again after both.
    async with uow.direct(org) as conn:
        await conn.execute(INSERT, [org, project, "after"])
    assert await _names(owner_engine, org) == ["after"]


async def test_a_connection_killed_under_it_is_an_operational_error_and_is_not_reused(
    uow: UnitOfWork, owner_engine: AsyncEngine
) -> None:
    org = str(uuid.uuid4())
    with pytest.raises(OperationalError):
        async with uow.direct(org) as conn:
            pid = (await (await conn.execute("select pg_backend_pid()")).fetchone() or [0])[0]
            async with owner_engine.connect() as owner:
                await owner.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
            await conn.execute(INSERT, [org, str(uuid.uuid4()), "lost"])
            await (await conn.execute(NAMES)).fetchall()
    # The pool holds one connection: the next transaction gets a fresh one, not the dead one.
    async with uow.direct(org) as conn:
        await conn.execute(INSERT, [org, str(uuid.uuid4()), "next"])
        assert (await (await conn.execute("select pg_backend_pid()")).fetchone() or [0])[0] != pid
    assert await _names(owner_engine, org) == ["next"]


async def test_pooled_connections_whose_server_end_died_are_replaced_before_use(
    database_url: str, owner_engine: AsyncEngine
) -> None:
    """No pre-ping round trip, yet a transaction never gets a connection the server has
    already terminated (restart, failover): both the SQLAlchemy and the direct path."""
    engine = create_engine(database_url, pool_size=3, max_overflow=0)
    uow = UnitOfWork(engine)
    org = str(uuid.uuid4())
    try:

        async def backend_pid() -> int:
            async with uow.tenant(org) as conn:
                return int((await conn.execute(text("select pg_backend_pid()"))).scalar_one())

        # Fill the pool with three idle connections, then terminate them all server-side.
        async def hold() -> int:
            async with uow.tenant(org) as conn:
                pid = int((await conn.execute(text("select pg_backend_pid()"))).scalar_one())
                await asyncio.sleep(0.1)
                return pid

        pids = set(await asyncio.gather(hold(), hold(), hold()))
        assert len(pids) == 3
        async with owner_engine.connect() as owner:
            await owner.execute(
                text("select pg_terminate_backend(p) from unnest(cast(:p as int[])) p"), {"p": list(pids)}
            )
        await asyncio.sleep(0.2)  # the terminations reach the sockets
        fresh = {await backend_pid()}
        async with uow.direct(org) as conn:
            await conn.execute(INSERT, [org, str(uuid.uuid4()), "after the restart"])
            fresh.add((await (await conn.execute("select pg_backend_pid()")).fetchone() or [0])[0])
        assert not fresh & pids
        assert await _names(owner_engine, org) == ["after the restart"]
    finally:
        await engine.dispose()
