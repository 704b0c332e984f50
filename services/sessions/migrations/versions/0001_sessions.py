"""Projects, work sessions, applied activity batches and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

from workpulse.migrate import outbox_ddl, tenant_table_policies

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_DDL = [
    """
    create table sessions.projects (
        organization_id uuid not null,
        id uuid not null default gen_random_uuid(),
        name text not null check (length(name) between 1 and 200),
        description text not null default '' check (length(description) <= 2000),
        created_by uuid,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        deleted_at timestamptz,
        primary key (organization_id, id)
    )
    """,
    # Names are unique among an organization's live projects; a deleted name can be reused.
    "create unique index projects_live_name on sessions.projects (organization_id, lower(name)) "
    "where deleted_at is null",
    """
    create table sessions.work_sessions (
        organization_id uuid not null,
        id uuid not null default gen_random_uuid(),
        user_id uuid not null,
        project_id uuid,
        start_time timestamptz not null default now(),
        end_time timestamptz,
        status text not null default 'active' check (status in ('active', 'stopped')),
        total_active_seconds bigint not null default 0 check (total_active_seconds >= 0),
        total_idle_seconds bigint not null default 0 check (total_idle_seconds >= 0),
        last_activity_at timestamptz,
        version bigint not null default 1,
        primary key (organization_id, id),
        foreign key (organization_id, project_id) references sessions.projects (organization_id, id),
        check ((status = 'active') = (end_time is null)),
        check (end_time is null or end_time >= start_time)
    )
    """,
    # The database, not a check-then-insert, guarantees one active session per user.
    "create unique index work_sessions_one_active on sessions.work_sessions (organization_id, user_id) "
    "where status = 'active'",
    "create index work_sessions_user_history on sessions.work_sessions "
    "(organization_id, user_id, start_time desc, id desc)",
    "create index work_sessions_org_history on sessions.work_sessions (organization_id, start_time desc, id desc)",
    """
    create table sessions.applied_batches (
        organization_id uuid not null,
        idempotency_key text not null check (length(idempotency_key) between 1 and 200),
        session_id uuid not null,
        event_count integer not null default 0,
        applied_at timestamptz not null default now(),
        primary key (organization_id, idempotency_key)
    )
    """,
    "create index applied_batches_age on sessions.applied_batches (applied_at)",
]

_TABLES = ("sessions.projects", "sessions.work_sessions", "sessions.applied_batches")


def upgrade() -> None:
    for statement in _DDL:
        op.execute(statement)
    for table in _TABLES:
        for statement in tenant_table_policies(table):
            op.execute(statement)
    for statement in outbox_ddl("sessions"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("drop table if exists sessions.outbox")
    for table in reversed(_TABLES):
        op.execute(f"drop table if exists {table}")
