"""PostgreSQL keeps tenants apart on every tenant table of every service, whatever the SQL.

The tables come from the catalog (``pg_class`` of the services' schemas), not from a
list someone has to remember: a new table with an ``organization_id`` fails
:func:`test_the_catalog_has_no_table_this_file_does_not_know` until it has rows here, and
then every isolation test below runs on it. As ``workpulse_app`` (the runtime role), with
no WHERE clause: no tenant set sees nothing, tenant A sees only A, and no write of A
reaches B. Tables that are not tenant tables, and activity-log partitions, are out of
the runtime role's reach altogether.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import get_args

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from workpulse.db import UnitOfWork, create_engine
from workpulse.migrate import services_with_migrations
from workpulse.postgres import RUNTIME_ROLE
from workpulse.settings import TenantSetting

SCHEMAS = services_with_migrations()

# The tenant key of a tenant table: organization_id, except for the tenant itself.
TENANT_KEY_OVERRIDES = {"auth.organizations": "id"}
# Tables that hold no tenant's rows: the runtime role must have no access to them at all.
NOT_TENANT_TABLES = {f"{schema}.alembic_version" for schema in SCHEMAS} | {"scheduler.job_runs"}

# One row per tenant table and tenant, inserted as the owner in this order (foreign keys).
# Parameters: :org, :user, :project, :session; :n and :mail are fresh per row.
ROWS: dict[str, str] = {
    "auth.organizations": "insert into auth.organizations (id, name) values (:org, 'Tenant')",
    "auth.users": "insert into auth.users (organization_id, id, email, name, password_hash, role) "
    "values (:org, :user, :mail, 'U', 'x', 'admin')",
    "auth.invites": "insert into auth.invites (organization_id, id, token_hash, email, role, created_by, expires_at) "
    "values (:org, :n, :mail, :mail, 'employee', :user, now() + interval '1 day')",
    "auth.refresh_tokens": "insert into auth.refresh_tokens (organization_id, id, family_id, user_id, token_hash, "
    "expires_at) values (:org, :n, :n, :user, :mail, now() + interval '1 day')",
    "sessions.projects": "insert into sessions.projects (organization_id, id, name) values (:org, :project, 'P')",
    # Stopped, so no idle check of a later test alerts on it.
    "sessions.work_sessions": "insert into sessions.work_sessions (organization_id, id, user_id, project_id, "
    "start_time, end_time, status) values (:org, :session, :user, :project, now() - interval '1 hour', now(), "
    "'stopped')",
    "sessions.applied_batches": "insert into sessions.applied_batches (organization_id, idempotency_key, session_id) "
    "values (:org, :mail, :session)",
    "ingest.activity_logs": 'insert into ingest.activity_logs (organization_id, session_id, user_id, "timestamp", '
    "activity_type, duration_seconds, client_event_id) values (:org, :session, :user, now(), 'active', 5, :n)",
    "ingest.session_bounds": "insert into ingest.session_bounds (organization_id, session_id, end_time) "
    "values (:org, :session, now())",
    "ingest.agent_policies": "insert into ingest.agent_policies (organization_id, version, document) "
    "values (:org, 1, '{}')",
    "scheduler.daily_summaries": "insert into scheduler.daily_summaries (organization_id, user_id, date, timezone, "
    "total_work_seconds, active_seconds, idle_seconds, productivity_score, sessions_count) "
    "values (:org, :user, current_date, 'UTC', 10, 5, 5, 50, 1)",
    "scheduler.alerts": "insert into scheduler.alerts (organization_id, type, user_id, session_id, alert_date, "
    "message, idle_minutes, created_at) "
    "values (:org, 'INACTIVE_ALERT', :user, :session, current_date, 'idle', 6, now())",
    "scheduler.alert_settings": "insert into scheduler.alert_settings (organization_id, idle_minutes, overtime_hours) "
    "values (:org, 7, 8)",
    # Published already, so no relay of a running mesh picks these up.
    **{
        f"{schema}.outbox": f"insert into {schema}.outbox (organization_id, event_type, payload, published_at) "
        "values (:org, 'TEST', '{}', now())"
        for schema in SCHEMAS
    },
}
TENANT_TABLES = sorted(ROWS)


def key_of(table: str) -> str:
    return TENANT_KEY_OVERRIDES.get(table, "organization_id")


@dataclass(frozen=True)
class Tenants:
    a: str
    b: str
    app: UnitOfWork

    @property
    def both(self) -> dict[str, str]:
        return {"a": self.a, "b": self.b}


async def _catalog(owner: AsyncEngine) -> dict[str, tuple[bool, bool, bool, bool]]:
    """Every ordinary or partitioned table of the services' schemas: (is a partition,
    has organization_id, RLS enabled, RLS forced)."""
    async with owner.connect() as conn:
        rows = await conn.execute(
            text(
                "select n.nspname || '.' || c.relname, c.relispartition, "
                " exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' "
                "  and not a.attisdropped), c.relrowsecurity, c.relforcerowsecurity "
                "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = any(:schemas) and c.relkind in ('r', 'p')"
            ),
            {"schemas": SCHEMAS},
        )
        return {name: (part, tenant, rls, forced) for name, part, tenant, rls, forced in rows}


@pytest.fixture(scope="module", params=get_args(TenantSetting))
async def tenants(
    owner_engine: AsyncEngine, database_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Tenants]:
    """Two organizations with one row each in every tenant table (written as the owner),
    and the runtime role's unit of work, once per way of setting the tenant."""
    orgs = [str(uuid.uuid4()), str(uuid.uuid4())]
    async with owner_engine.begin() as conn:
        for org in orgs:
            ids = {"org": org, "user": str(uuid.uuid4()), "project": str(uuid.uuid4()), "session": str(uuid.uuid4())}
            for table in ROWS:
                fresh = {"n": str(uuid.uuid4()), "mail": f"{uuid.uuid4()}@example.com"}
                await conn.execute(text(ROWS[table]), {**ids, **fresh})
    engine = create_engine(database_url, pool_size=1, tenant_setting=request.param)
    yield Tenants(orgs[0], orgs[1], UnitOfWork(engine))
    await engine.dispose()


async def test_the_catalog_has_no_table_this_file_does_not_know(owner_engine: AsyncEngine) -> None:
    catalog = await _catalog(owner_engine)
    tables = {name for name, (partition, *_) in catalog.items() if not partition}
    with_tenant_key = {name for name, (partition, tenant, *_) in catalog.items() if tenant and not partition}
    assert with_tenant_key | set(TENANT_KEY_OVERRIDES) == set(TENANT_TABLES), "give every tenant table a row in ROWS"
    assert tables - set(TENANT_TABLES) <= NOT_TENANT_TABLES, "a new table: a tenant table or not?"


async def test_every_tenant_table_has_row_level_security_enabled_and_forced(owner_engine: AsyncEngine) -> None:
    catalog = await _catalog(owner_engine)
    lacking = [t for t in TENANT_TABLES if catalog[t][2:] != (True, True)]
    assert lacking == [], "tables without ENABLE and FORCE ROW LEVEL SECURITY"


async def test_every_policy_the_runtime_role_meets_is_keyed_on_the_tenant_setting(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "select schemaname || '.' || tablename, cmd, permissive, coalesce(qual, ''), "
                    " coalesce(with_check, '') from pg_policies "
                    "where schemaname = any(:schemas) and (:role = any(roles) or 'public' = any(roles))"
                ),
                {"schemas": SCHEMAS, "role": RUNTIME_ROLE},
            )
        ).all()
    policies: dict[str, list[tuple[str, str, str, str]]] = {}
    for table, cmd, permissive, qual, check in rows:
        policies.setdefault(table, []).append((cmd, permissive, qual, check))
    for table in TENANT_TABLES:
        found = policies.get(table, [])
        assert found, f"{table}: no policy for {RUNTIME_ROLE} (with RLS on it sees nothing; off, everything)"
        for cmd, permissive, qual, check in found:
            for clause in (qual, check) if cmd == "ALL" else (qual or check,):
                assert "app.organization_id" in clause and key_of(table) in clause, (table, cmd, permissive, clause)
    assert set(policies) <= set(TENANT_TABLES), "a policy for the runtime role on a table that is not a tenant's"


async def test_the_runtime_role_cannot_touch_tables_of_no_tenant_nor_partitions(
    owner_engine: AsyncEngine, tenants: Tenants
) -> None:
    catalog = await _catalog(owner_engine)
    out_of_reach = sorted(NOT_TENANT_TABLES & set(catalog) | {n for n, (part, *_) in catalog.items() if part})
    assert any(name.startswith("ingest.activity_logs_") for name in out_of_reach)
    for table in out_of_reach:
        with pytest.raises(DBAPIError, match="permission denied"):
            async with tenants.app.tenant(tenants.a) as conn:
                await conn.execute(text(f"select count(*) from {table}"))


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_without_a_tenant_nothing_is_visible_nor_writable(
    table: str, tenants: Tenants, owner_engine: AsyncEngine
) -> None:
    key = key_of(table)
    async with owner_engine.connect() as conn:
        stored = (
            await conn.execute(text(f"select count(*) from {table} where {key} in (:a, :b)"), tenants.both)
        ).scalar_one()
    assert stored == 2  # the control: the rows are there
    async with tenants.app.unscoped() as conn:
        assert (await conn.execute(text(f"select count(*) from {table}"))).scalar_one() == 0
        assert (await conn.execute(text(f"update {table} set {key} = {key}"))).rowcount == 0
        assert (await conn.execute(text(f"delete from {table}"))).rowcount == 0
    with pytest.raises(DBAPIError, match="row-level security"):
        async with tenants.app.unscoped() as conn:
            await _insert_copy(conn, table, tenants.a)


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_a_tenant_sees_and_writes_only_its_own_rows(
    table: str, tenants: Tenants, owner_engine: AsyncEngine
) -> None:
    key = key_of(table)
    async with tenants.app.tenant(tenants.a) as conn:
        # No WHERE clause: only the policy stands between the tenants.
        seen = (await conn.execute(text(f"select {key}::text from {table}"))).scalars().all()
        assert seen == [tenants.a]
        theirs = {"b": tenants.b}
        assert (await conn.execute(text(f"update {table} set {key} = {key} where {key} = :b"), theirs)).rowcount == 0
        assert (await conn.execute(text(f"delete from {table} where {key} = :b"), theirs)).rowcount == 0
    # Neither planting a row in B nor moving A's row over to B passes the policy's check.
    with pytest.raises(DBAPIError, match="row-level security"):
        async with tenants.app.tenant(tenants.a) as conn:
            await _insert_copy(conn, table, tenants.b)
    with pytest.raises(DBAPIError, match="row-level security"):
        async with tenants.app.tenant(tenants.a) as conn:
            await conn.execute(text(f"update {table} set {key} = :b"), theirs)
    async with owner_engine.connect() as conn:
        counts = await conn.execute(
            text(f"select {key}::text, count(*) from {table} where {key} in (:a, :b) group by 1"), tenants.both
        )
        assert dict(counts.tuples().all()) == {tenants.a: 1, tenants.b: 1}


async def _insert_copy(conn: AsyncConnection, table: str, org: str) -> None:
    """Inserts into ``table`` a row of tenant ``org`` (its other columns left to defaults
    and nulls: the policy's check comes before constraints, so it is what refuses it)."""
    await conn.execute(text(f"insert into {table} ({key_of(table)}) values (:org)"), {"org": org})
