"""The migrated schema is ready to be sharded by tenant with Citus (ARCHITECTURE.md §8).

Citus distributes a table by one column and enforces a primary key, unique index or
foreign key only shard by shard, so each must contain that column; a foreign key between
two distributed tables must also join them on it (co-located). Row-level security runs
on the workers, per shard, so a policy may read nothing but the row's tenant key and the
tenant setting. :func:`citus_violations` reads all of this from ``pg_catalog`` and
returns what breaks it: empty for every schema the migrations create (a database
migrated for this module alone, so no other test's scratch tables count), and, on
tables planted to break each rule, exactly one violation per rule broken.

Every table with an ``organization_id`` column is distributed by it. A table without one
must be listed below, with the reason, as a reference table (replicated to every worker)
or a local table (kept on the coordinator); a local table may carry an
``organization_id`` (and row-level security) when it must not be sharded.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from workpulse.db import sqlalchemy_url
from workpulse.migrate import services_with_migrations, upgrade_all
from workpulse.postgres import MAINTENANCE_ROLE, RUNTIME_ROLE

TENANT_KEY = "organization_id"
SETTING = "current_setting('app.organization_id'"

REFERENCE_TABLES = {
    "auth.organizations": "the tenants themselves, keyed by id (the tenant id): one small row each, and "
    "a workspace name is unique across all of them (log-in finds the organization by it before any tenant "
    "is known), which only a table that is whole on every node can enforce; distributed tables' foreign "
    "keys to it (users, invites) are allowed, and its policy is keyed on id",
}
LOCAL_TABLES = {
    **{
        f"{schema}.alembic_version": "the schema's migration history: one row, read by `workpulse migrate` only"
        for schema in services_with_migrations()
    },
    **{
        f"{schema}.outbox": "events waiting for the relay, which claims them across tenants in id order with "
        "SELECT ... FOR UPDATE SKIP LOCKED under an advisory lock and is woken by NOTIFY: none of that runs "
        "across shards, so the table stays whole on the coordinator (rows are short-lived; a write to it "
        "joins its tenant's shard in one distributed transaction); organization_id is a payload column"
        for schema in services_with_migrations()
    },
    "scheduler.job_runs": "one row per (job, slot) for all tenants, claimed by one scheduler replica: "
    "cross-tenant bookkeeping of the maintenance path, no tenant column",
}
TENANT_KEY_OVERRIDES = {"auth.organizations": "id"}


@dataclass(frozen=True)
class Layout:
    """How the tables are meant to be placed: the listed ones by name (with the reason),
    every other table distributed by :data:`TENANT_KEY`."""

    reference: Mapping[str, str]
    local: Mapping[str, str]
    tenant_keys: Mapping[str, str] = field(default_factory=dict)

    def kind(self, table: str, has_tenant_key: bool) -> str | None:
        if table in self.reference:
            return "reference"
        if table in self.local:
            return "local"
        return "distributed" if has_tenant_key else None

    def key(self, table: str) -> str:
        return self.tenant_keys.get(table, TENANT_KEY)


LAYOUT = Layout(REFERENCE_TABLES, LOCAL_TABLES, TENANT_KEY_OVERRIDES)

_TABLES = """
select c.oid::int, n.nspname || '.' || c.relname,
       exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = :key and not a.attisdropped)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(:schemas) and c.relkind in ('r', 'p') and not c.relispartition
"""

# Primary keys, unique and exclusion indexes, constraints or not: the key columns
# (INCLUDE columns excluded; 0 is an expression).
_UNIQUE_INDEXES = """
select i.indrelid::int, x.relname, i.indisprimary,
       array(select coalesce(a.attname, '(expression)') from unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) k
             left join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k)
from pg_index i join pg_class x on x.oid = i.indexrelid
where i.indrelid = any(:oids) and (i.indisunique or i.indisexclusion)
"""

# Foreign keys declared on the tables themselves (a partition's are its parent's):
# referencing and referenced columns, in order.
_FOREIGN_KEYS = """
select k.conrelid::int, k.conname, k.confrelid::int, n.nspname || '.' || c.relname,
       array(select a.attname from unnest(k.conkey) with ordinality u(attnum, i)
             join pg_attribute a on a.attrelid = k.conrelid and a.attnum = u.attnum order by u.i),
       array(select a.attname from unnest(k.confkey) with ordinality u(attnum, i)
             join pg_attribute a on a.attrelid = k.confrelid and a.attnum = u.attnum order by u.i)
from pg_constraint k join pg_class c on c.oid = k.confrelid join pg_namespace n on n.oid = c.relnamespace
where k.contype = 'f' and k.conrelid = any(:oids) and k.conparentid = 0
"""

# Every policy: its clauses as text, whether it applies to the runtime role (by name or
# as PUBLIC), and what its clauses depend on besides built-ins (pinned, never recorded):
# columns of its own table, other relations, functions.
_POLICIES = """
select p.polrelid::int, p.polname,
       coalesce(pg_get_expr(p.polqual, p.polrelid), ''), coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''),
       0 = any(p.polroles) or exists (select 1 from pg_roles r where r.oid = any(p.polroles) and r.rolname = :runtime),
       array(select a.attname from pg_depend d
             join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
             where d.classid = 'pg_policy'::regclass and d.objid = p.oid and d.refclassid = 'pg_class'::regclass
               and d.refobjid = p.polrelid and d.refobjsubid > 0),
       array(select distinct pg_describe_object(d.refclassid, d.refobjid, 0) from pg_depend d
             where d.classid = 'pg_policy'::regclass and d.objid = p.oid
               and ((d.refclassid = 'pg_class'::regclass and d.refobjid <> p.polrelid)
                    or d.refclassid = 'pg_proc'::regclass))
from pg_policy p where p.polrelid = any(:oids)
"""


async def citus_violations(conn: AsyncConnection, schemas: list[str], layout: Layout) -> list[str]:
    """What in ``schemas`` stops the layout from being distributed by Citus, one line each."""
    found = {
        oid: (name, has_key)
        for oid, name, has_key in await conn.execute(text(_TABLES), {"schemas": schemas, "key": TENANT_KEY})
    }
    names = {oid: name for oid, (name, _) in found.items()}
    kinds = {oid: layout.kind(name, has_key) for oid, (name, has_key) in found.items()}
    oids = list(found)
    violations = [
        f"{names[o]}: no {TENANT_KEY}, and not listed as a reference or local table" for o in oids if not kinds[o]
    ]
    listed = {*layout.reference, *layout.local}
    in_schemas = {t for t in listed if t.split(".", 1)[0] in schemas}
    violations += [f"{t}: listed, but no such table" for t in sorted(in_schemas - set(names.values()))]
    violations += [
        f"{t}: listed as both reference and local" for t in sorted(set(layout.reference) & set(layout.local))
    ]

    for relid, index, primary, columns in await conn.execute(text(_UNIQUE_INDEXES), {"oids": oids}):
        if kinds[relid] == "distributed" and TENANT_KEY not in columns:
            what = "primary key" if primary else "unique index"
            violations.append(f"{names[relid]}: {what} {index} ({', '.join(columns)}) lacks {TENANT_KEY}")

    rows = await conn.execute(text(_FOREIGN_KEYS), {"oids": oids})
    for relid, constraint, target_oid, target, columns, target_columns in rows:
        source, kind = names[relid], kinds[relid]
        target_kind = kinds.get(target_oid)  # None: unlisted, or outside the schemas
        pairs = dict(zip(columns, target_columns, strict=True))
        if kind == "distributed" and target_kind == "distributed":
            if pairs.get(TENANT_KEY) != layout.key(target):
                violations.append(
                    f"{source}: foreign key {constraint} does not join {TENANT_KEY} to {target}.{layout.key(target)}"
                )
        elif kind == "distributed" and target_kind != "reference":
            violations.append(f"{source}: foreign key {constraint} to {target}, neither distributed nor reference")
        elif kind == "reference" and target_kind != "reference":
            violations.append(f"{source}: foreign key {constraint} of a reference table to {target}")
        elif kind == "local" and target_kind == "distributed":
            violations.append(f"{source}: foreign key {constraint} of a local table to the distributed {target}")

    rows = await conn.execute(text(_POLICIES), {"oids": oids, "runtime": RUNTIME_ROLE})
    for relid, policy, using, check, runtime, columns, others in rows:
        table, key = names[relid], layout.key(names[relid])
        label = f"{table}: policy {policy}"
        violations += [f"{label} reads the column {c}" for c in sorted(set(columns) - {key})]
        violations += [f"{label} depends on {o}" for o in sorted(others)]
        for clause in (using, check):
            keyed = SETTING in clause and key in columns
            if clause and not keyed and (runtime or clause != "true"):
                violations.append(f"{label} is not keyed on {key} and app.organization_id: {clause}")
    return violations


@pytest.fixture(scope="module")
def migrated_url(server_urls: tuple[str, str]) -> Iterator[str]:
    """A database of this module's own, with every service's migrations applied and
    nothing else: every schema in it but PostgreSQL's own is one the migrations made."""
    admin_url = sqlalchemy_url(server_urls[0])
    name = f"wp_citus_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_all(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


@pytest.fixture(scope="module")
async def owner(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(migrated_url, pool_size=1)
    yield engine
    await engine.dispose()


async def _migrated_schemas(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(
        text(
            "select nspname from pg_namespace where nspname not in ('pg_catalog', 'information_schema') "
            "and nspname !~ '^pg_(toast|temp_)'"
        )
    )
    return sorted(rows.scalars())


async def test_the_migrated_schema_can_be_distributed_by_organization(owner: AsyncEngine) -> None:
    async with owner.connect() as conn:
        schemas = await _migrated_schemas(conn)
        assert set(services_with_migrations()) <= set(schemas)
        assert await citus_violations(conn, schemas, LAYOUT) == []
        # The control: it looked at the tables (and would have complained about each).
        assert await citus_violations(conn, schemas, Layout({}, {})) != []


async def test_the_unique_index_users_had_on_id_alone_is_what_the_checker_reports(owner: AsyncEngine) -> None:
    """The finding of this check on the schema before auth's migration 0003, put back."""
    async with owner.connect() as conn:
        await conn.execute(text("alter table auth.users add constraint users_id_key unique (id)"))
        violations = await citus_violations(conn, ["auth"], LAYOUT)
        await conn.rollback()
    assert violations == ["auth.users: unique index users_id_key (id) lacks organization_id"]


async def test_the_users_of_an_organization_are_unique_per_organization_only(owner: AsyncEngine) -> None:
    """auth.users had ``unique (id)``; one id in two organizations is now two rows."""
    orgs, user = [str(uuid.uuid4()), str(uuid.uuid4())], str(uuid.uuid4())
    async with owner.connect() as conn:
        await conn.execute(text(f"set local role {MAINTENANCE_ROLE}"))
        for org in orgs:
            await conn.execute(text("insert into auth.organizations (id, name) values (:org, 'Tenant')"), {"org": org})
            await conn.execute(
                text(
                    "insert into auth.users (organization_id, id, email, name, password_hash, role) "
                    "values (:org, :user, 'same@example.com', 'U', 'x', 'admin')"
                ),
                {"org": org, "user": user},
            )
        count = await conn.execute(text("select count(*) from auth.users where id = :user"), {"user": user})
        assert count.scalar_one() == 2
        await conn.rollback()


# Tables planted in a scratch schema (rolled back with it), each breaking one rule, next
# to a table that breaks none: the checker names exactly the rules broken.
_PLANTED = [
    "create table {s}.tenants (id uuid primary key, name text unique)",
    "create table {s}.good (organization_id uuid not null references {s}.tenants (id), id uuid not null, "
    "primary key (organization_id, id))",
    "create unique index good_name on {s}.good (organization_id, (id::text))",
    "create table {s}.stray (id uuid primary key)",
    "create table {s}.pk_by_id (organization_id uuid not null, id uuid primary key)",
    "create table {s}.unique_by_id (organization_id uuid not null, id uuid not null, "
    "primary key (organization_id, id))",
    "create unique index unique_by_id_id on {s}.unique_by_id (id) include (organization_id)",
    "create table {s}.fk_by_id (organization_id uuid not null, id uuid not null, good_id uuid, "
    "primary key (organization_id, id), "
    "foreign key (good_id, organization_id) references {s}.good (organization_id, id))",
    "create table {s}.ledger (slot int primary key)",
    "create table {s}.fk_to_local (organization_id uuid not null, slot int references {s}.ledger (slot), "
    "primary key (organization_id))",
    "create table {s}.by_day (organization_id uuid not null, day date not null, n int, "
    "primary key (organization_id, day), unique (day)) partition by range (day)",
    "create table {s}.by_day_2030 partition of {s}.by_day for values from ('2030-01-01') to ('2031-01-01')",
    "create table {s}.policy_reads_more (organization_id uuid not null, owner_id uuid, primary key (organization_id))",
    "create table {s}.policy_unkeyed (organization_id uuid not null primary key)",
    "create table {s}.policy_joins (organization_id uuid not null primary key)",
]
_CURRENT = "nullif(current_setting('app.organization_id', true), '')::uuid"
_POLICIES_PLANTED = [
    f"create policy tenant on {{s}}.tenants to {RUNTIME_ROLE} using (id = {_CURRENT})",
    f"create policy tenant on {{s}}.good to {RUNTIME_ROLE} using (organization_id = {_CURRENT}) "
    f"with check (organization_id = {_CURRENT})",
    f"create policy maintenance on {{s}}.good to {MAINTENANCE_ROLE} using (true)",
    f"create policy tenant on {{s}}.policy_reads_more to {RUNTIME_ROLE} "
    f"using (organization_id = {_CURRENT} and owner_id is not null)",
    f"create policy tenant on {{s}}.policy_unkeyed to {RUNTIME_ROLE} using (true)",
    f"create policy tenant on {{s}}.policy_joins to {RUNTIME_ROLE} "
    f"using (organization_id in (select id from {{s}}.tenants where id = {_CURRENT}))",
]


async def test_the_checker_names_every_rule_a_planted_table_breaks(owner: AsyncEngine) -> None:
    s = f"scratch_{uuid.uuid4().hex[:8]}"
    layout = Layout(
        reference={f"{s}.tenants": "planted"},
        local={f"{s}.ledger": "planted", f"{s}.gone": "planted"},
        tenant_keys={f"{s}.tenants": "id"},
    )
    async with owner.connect() as conn:
        await conn.execute(text(f"create schema {s}"))
        for statement in _PLANTED + _POLICIES_PLANTED:
            await conn.execute(text(statement.format(s=s)))
        violations = await citus_violations(conn, [s], layout)
        await conn.rollback()
    assert sorted(violations) == sorted(
        [
            f"{s}.stray: no organization_id, and not listed as a reference or local table",
            f"{s}.gone: listed, but no such table",
            f"{s}.pk_by_id: primary key pk_by_id_pkey (id) lacks organization_id",
            f"{s}.unique_by_id: unique index unique_by_id_id (id) lacks organization_id",
            f"{s}.by_day: unique index by_day_day_key (day) lacks organization_id",
            f"{s}.fk_by_id: foreign key fk_by_id_good_id_organization_id_fkey does not join organization_id "
            f"to {s}.good.organization_id",
            f"{s}.fk_to_local: foreign key fk_to_local_slot_fkey to {s}.ledger, neither distributed nor reference",
            f"{s}.policy_reads_more: policy tenant reads the column owner_id",
            f"{s}.policy_unkeyed: policy tenant is not keyed on organization_id and app.organization_id: true",
            f"{s}.policy_joins: policy tenant depends on table {s}.tenants",
        ]
    )


async def test_the_checker_refuses_foreign_keys_out_of_reference_tables_and_into_shards_from_local_ones(
    owner: AsyncEngine,
) -> None:
    s = f"scratch_{uuid.uuid4().hex[:8]}"
    statements = [
        "create table {s}.shard (organization_id uuid not null, id uuid not null, primary key (organization_id, id))",
        "create table {s}.plans (id int primary key, organization_id uuid, shard_id uuid, "
        "foreign key (organization_id, shard_id) references {s}.shard (organization_id, id))",
        "create table {s}.ledger (slot int primary key, organization_id uuid, shard_id uuid, "
        "foreign key (organization_id, shard_id) references {s}.shard (organization_id, id))",
    ]
    layout = Layout(reference={f"{s}.plans": "planted"}, local={f"{s}.ledger": "planted"})
    async with owner.connect() as conn:
        await conn.execute(text(f"create schema {s}"))
        for statement in statements:
            await conn.execute(text(statement.format(s=s)))
        violations = await citus_violations(conn, [s], layout)
        await conn.rollback()
    assert sorted(violations) == [
        f"{s}.ledger: foreign key ledger_organization_id_shard_id_fkey of a local table to the distributed {s}.shard",
        f"{s}.plans: foreign key plans_organization_id_shard_id_fkey of a reference table to {s}.shard",
    ]
