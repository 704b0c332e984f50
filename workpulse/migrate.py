"""Migrations: Alembic, one environment and one PostgreSQL schema per service.

``workpulse migrate`` creates the two database roles, then upgrades every service that
has a ``migrations/`` folder, under an advisory lock so concurrent runs are safe.
The helpers below are what service migrations call to create tenant tables the same way.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config

from workpulse.db import sqlalchemy_url
from workpulse.postgres import MAINTENANCE_ROLE, RUNTIME_ROLE

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
_LOCK_KEY = 0x5750_4D49  # "WPMI"


def services_with_migrations() -> list[str]:
    return sorted(p.parent.parent.name for p in SERVICES_DIR.glob("*/migrations/env.py"))


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    cfg.attributes["schema"] = service
    return cfg


def ensure_roles(conn: sa.Connection) -> None:
    """The runtime role (subject to RLS) and the maintenance role; both NOLOGIN, assumed
    by the connecting user with SET ROLE, so they need no password."""
    for role in (RUNTIME_ROLE, MAINTENANCE_ROLE):
        conn.execute(
            sa.text(
                f"do $$ begin create role {role} nologin; "
                "exception when duplicate_object or unique_violation then null; end $$"
            )
        )
        conn.execute(sa.text(f'grant {role} to "{conn.execute(sa.text("select current_user")).scalar()}"'))


def upgrade_all(url: str) -> list[str]:
    engine = sa.create_engine(sqlalchemy_url(url))
    services = services_with_migrations()
    with engine.connect() as conn:
        conn.execute(sa.text("select pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        try:
            ensure_roles(conn)
            conn.commit()
            for service in services:
                cfg = alembic_config(service, url)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
        finally:
            conn.execute(sa.text("select pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            conn.commit()
    engine.dispose()
    return services


def run_env() -> None:
    """The body of every service's ``migrations/env.py``."""
    schema: str = context.config.attributes["schema"]
    conn: sa.Connection | None = context.config.attributes.get("connection")
    if conn is None:
        engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url") or "")
        with engine.connect() as own:
            _run(own, schema)
            own.commit()
        return
    _run(conn, schema)


def _run(conn: sa.Connection, schema: str) -> None:
    conn.execute(sa.text(f"create schema if not exists {schema}"))
    conn.execute(sa.text(f"grant usage on schema {schema} to {RUNTIME_ROLE}, {MAINTENANCE_ROLE}"))
    context.configure(connection=conn, version_table_schema=schema, include_schemas=True)
    with context.begin_transaction():
        context.run_migrations()


def tenant_table_policies(table: str, *, tenant_column: str = "organization_id") -> list[str]:
    """DDL putting ``table`` under row-level security: the runtime role sees the rows of
    the tenant named by ``app.organization_id``; the maintenance role sees all."""
    current = "nullif(current_setting('app.organization_id', true), '')::uuid"
    return [
        f"alter table {table} enable row level security",
        f"alter table {table} force row level security",
        f"create policy tenant_isolation on {table} to {RUNTIME_ROLE} "
        f"using ({tenant_column} = {current}) with check ({tenant_column} = {current})",
        f"create policy maintenance on {table} to {MAINTENANCE_ROLE} using (true) with check (true)",
        f"grant select, insert, update, delete on {table} to {RUNTIME_ROLE}, {MAINTENANCE_ROLE}",
    ]


def outbox_ddl(schema: str) -> list[str]:
    """The outbox table every event-producing service owns."""
    table = f"{schema}.outbox"
    return [
        f"create table {table} ("
        " id bigserial primary key,"
        " organization_id uuid not null,"
        " topic text not null default 'events',"
        " event_type text not null,"
        " payload jsonb not null,"
        " created_at timestamptz not null default now(),"
        " published_at timestamptz)",
        f"create index outbox_unpublished on {table} (topic, id) where published_at is null",
        *tenant_table_policies(table),
        f"grant usage on sequence {schema}.outbox_id_seq to {RUNTIME_ROLE}, {MAINTENANCE_ROLE}",
    ]
