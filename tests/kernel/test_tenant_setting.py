"""TENANT_SETTING: how a transaction names its tenant (real PostgreSQL, runtime role).

``set_config`` binds the id as a parameter; ``set_local`` sends ``SET LOCAL``, the form
Citus propagates to its workers. Either way, on both of the unit of work's paths (the
SQLAlchemy one and the direct one): a tenant sees only its rows, the setting is gone
when the transaction ends, and (``set_local``, where the id is written into the
statement) anything but a UUID is refused before any SQL is sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any, get_args

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from workpulse.db import DriverConnection, UnitOfWork, create_engine, direct_switch_tenant, switch_tenant
from workpulse.settings import TenantSetting

MODES: tuple[TenantSetting, ...] = get_args(TenantSetting)
FORMS = {"set_config": "select set_config('app.organization_id', ", "set_local": "set local app.organization_id = "}
NAMES = "select name from sessions.projects order by name"
CURRENT = "select coalesce(current_setting('app.organization_id', true), '')"
HOSTILE = "00000000-0000-0000-0000-000000000000'; reset role; select '"


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> TenantSetting:
    value: TenantSetting = request.param
    return value


@pytest.fixture
async def uow(database_url: str, mode: TenantSetting) -> AsyncIterator[UnitOfWork]:
    """One pooled connection, so each transaction reuses the previous one's session."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0, tenant_setting=mode)
    yield UnitOfWork(engine)
    await engine.dispose()


@pytest.fixture(scope="module")
async def orgs(owner_engine: AsyncEngine) -> tuple[str, str]:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    async with owner_engine.begin() as conn:
        for org in (a, b):
            await conn.execute(
                text("insert into sessions.projects (organization_id, name) values (:org, :name)"),
                {"org": org, "name": f"project of {org}"},
            )
    return a, b


async def _last_statement(owner: AsyncEngine, pid: int) -> str:
    """What the backend ``pid`` ran last (it is idle in its transaction meanwhile)."""
    async with owner.connect() as conn:
        query = await conn.execute(text("select query from pg_stat_activity where pid = :pid"), {"pid": pid})
        return str(query.scalar_one())


async def test_a_tenant_transaction_sees_only_its_rows_and_the_setting_ends_with_it(
    uow: UnitOfWork, mode: TenantSetting, orgs: tuple[str, str], owner_engine: AsyncEngine
) -> None:
    a, b = orgs
    async with uow.tenant(a) as conn:
        pid = int((await conn.execute(text("select pg_backend_pid()"))).scalar_one())
        assert (await conn.execute(text(NAMES))).scalars().all() == [f"project of {a}"]
        await switch_tenant(conn, b)
        assert await _last_statement(owner_engine, pid) == FORMS[mode] + (
            f"'{b}'" if mode == "set_local" else "$1, true)"
        )
        assert (await conn.execute(text(NAMES))).scalars().all() == [f"project of {b}"]
    async with uow.unscoped() as conn:
        assert int((await conn.execute(text("select pg_backend_pid()"))).scalar_one()) == pid  # the same session
        assert (await conn.execute(text(CURRENT))).scalar_one() == ""
        assert (await conn.execute(text(NAMES))).scalars().all() == []


async def test_a_direct_transaction_sees_only_its_rows_and_the_setting_ends_with_it(
    uow: UnitOfWork, mode: TenantSetting, orgs: tuple[str, str], owner_engine: AsyncEngine
) -> None:
    a, b = orgs
    async with uow.direct(a) as conn:
        pid = (await (await conn.execute("select pg_backend_pid()")).fetchone() or [0])[0]
        assert await _names(conn) == [f"project of {a}"]
        await direct_switch_tenant(conn, b)
        assert (await _last_statement(owner_engine, pid)).startswith(FORMS[mode])
        assert await _names(conn) == [f"project of {b}"]
    async with uow.direct(None) as conn:
        assert (await (await conn.execute("select pg_backend_pid()")).fetchone() or [0])[0] == pid
        assert (await (await conn.execute(CURRENT)).fetchone() or [None])[0] == ""
        assert await _names(conn) == []


async def _names(conn: DriverConnection) -> list[Any]:
    return [row[0] for row in await (await conn.execute(NAMES)).fetchall()]


@pytest.mark.parametrize("bad", [HOSTILE, "", "not a uuid"])
async def test_set_local_refuses_anything_but_a_uuid_before_sending_sql(
    database_url: str, owner_engine: AsyncEngine, bad: str
) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0, tenant_setting="set_local")
    sent: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    uow = UnitOfWork(engine)
    try:
        with pytest.raises(ValueError, match="badly formed"):
            async with uow.tenant(bad):
                pass
        assert sent == []  # not even the SET: nothing reached the server
        with pytest.raises(ValueError, match="badly formed"):
            async with uow.direct(bad):
                pass
        # The refused transactions left the one connection clean, and its role in place.
        async with uow.unscoped() as conn:
            assert (await conn.execute(text("select current_user"))).scalar_one() == "workpulse_app"
            assert (await conn.execute(text(CURRENT))).scalar_one() == ""
    finally:
        await engine.dispose()


async def test_set_local_canonicalises_the_uuid_it_writes_into_the_statement(database_url: str) -> None:
    org = uuid.uuid4()
    engine = create_engine(database_url, pool_size=1, tenant_setting="set_local")
    try:
        async with UnitOfWork(engine).tenant("{" + org.hex.upper() + "}") as conn:
            assert (await conn.execute(text(CURRENT))).scalar_one() == str(org)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("env", "expected"), [(None, "set_config"), ("set_config", "set_config"), ("set_local", "set_local")]
)
async def test_engines_follow_the_environment_unless_told_otherwise(
    database_url: str, monkeypatch: pytest.MonkeyPatch, env: str | None, expected: TenantSetting
) -> None:
    if env is None:
        monkeypatch.delenv("TENANT_SETTING", raising=False)
    else:
        monkeypatch.setenv("TENANT_SETTING", env)
    engines = [(create_engine(database_url, pool_size=1), expected)]
    engines += [(create_engine(database_url, pool_size=1, tenant_setting=m), m) for m in MODES]
    for engine, mode in engines:
        try:
            async with engine.connect() as conn:
                assert await _form_sent(conn) == mode
                propagated = "select coalesce(current_setting('citus.propagate_set_commands', true), '')"
                assert (await conn.execute(text(propagated))).scalar_one() == ("local" if mode == "set_local" else "")
        finally:
            await engine.dispose()


async def _form_sent(conn: AsyncConnection) -> TenantSetting:
    sent: list[str] = []
    listener = lambda *args: sent.append(args[2])  # noqa: E731
    event.listen(conn.sync_connection, "before_cursor_execute", listener)
    await switch_tenant(conn, str(uuid.uuid4()))
    event.remove(conn.sync_connection, "before_cursor_execute", listener)
    (statement,) = sent
    return "set_local" if statement.startswith(FORMS["set_local"]) else "set_config"


def test_a_bad_tenant_setting_stops_the_process_naming_it() -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x", "TENANT_SETTING": "set"}
    code = "from workpulse.settings import CommonSettings, load; load(CommonSettings)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "TENANT_SETTING" in result.stderr and "Traceback" not in result.stderr
