"""Daily summaries, alerts, alert settings, job runs and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

from workpulse.migrate import outbox_ddl, tenant_table_policies
from workpulse.postgres import MAINTENANCE_ROLE

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_DDL = [
    """
    create table scheduler.daily_summaries (
        organization_id uuid not null,
        user_id uuid not null,
        date date not null,
        timezone text not null,
        total_work_seconds bigint not null check (total_work_seconds >= 0),
        active_seconds bigint not null check (active_seconds >= 0),
        idle_seconds bigint not null check (idle_seconds >= 0),
        productivity_score numeric(5, 2) not null check (productivity_score between 0 and 100),
        sessions_count integer not null check (sessions_count >= 0),
        top_apps jsonb not null default '[]',
        computed_at timestamptz not null default now(),
        primary key (organization_id, user_id, date)
    )
    """,
    "create index daily_summaries_by_date on scheduler.daily_summaries (organization_id, date, user_id)",
    """
    create table scheduler.alerts (
        organization_id uuid not null,
        id uuid not null default gen_random_uuid(),
        type text not null check (type in ('INACTIVE_ALERT', 'OVERTIME_ALERT')),
        user_id uuid not null,
        session_id uuid,
        alert_date date not null,
        message text not null,
        idle_minutes integer,
        work_hours numeric(6, 2),
        created_at timestamptz not null,
        resolved_at timestamptz,
        acknowledged_by uuid,
        acknowledged_at timestamptz,
        primary key (organization_id, id),
        check ((type = 'INACTIVE_ALERT') = (session_id is not null))
    )
    """,
    # One INACTIVE_ALERT per session per local day, one OVERTIME_ALERT per user per local day.
    "create unique index alerts_one_inactive on scheduler.alerts (organization_id, session_id, alert_date) "
    "where type = 'INACTIVE_ALERT'",
    "create unique index alerts_one_overtime on scheduler.alerts (organization_id, user_id, alert_date) "
    "where type = 'OVERTIME_ALERT'",
    "create index alerts_by_user on scheduler.alerts (organization_id, user_id, created_at desc, id desc)",
    "create index alerts_by_org on scheduler.alerts (organization_id, created_at desc, id desc)",
    "create index alerts_unresolved on scheduler.alerts (alert_date) where resolved_at is null",
    """
    create table scheduler.alert_settings (
        organization_id uuid primary key,
        idle_minutes integer not null check (idle_minutes between 1 and 1440),
        overtime_hours numeric(4, 2) not null check (overtime_hours > 0 and overtime_hours <= 24),
        updated_at timestamptz not null default now()
    )
    """,
    # Not a tenant table: one row per (job, slot) across all tenants, claimed by one replica.
    """
    create table scheduler.job_runs (
        job text not null,
        slot timestamptz not null,
        started_at timestamptz,
        finished_at timestamptz,
        rows bigint not null default 0,
        error text,
        attempts integer not null default 0,
        runner text,
        primary key (job, slot)
    )
    """,
    "create index job_runs_latest on scheduler.job_runs (job, slot desc) where finished_at is not null",
    f"grant select, insert, update, delete on scheduler.job_runs to {MAINTENANCE_ROLE}",
]

_TENANT_TABLES = ("scheduler.daily_summaries", "scheduler.alerts")


def upgrade() -> None:
    for statement in _DDL:
        op.execute(statement)
    for table in _TENANT_TABLES:
        for statement in tenant_table_policies(table):
            op.execute(statement)
    for statement in tenant_table_policies("scheduler.alert_settings"):
        op.execute(statement)
    for statement in outbox_ddl("scheduler"):
        op.execute(statement)


def downgrade() -> None:
    for table in ("outbox", "job_runs", "alert_settings", "alerts", "daily_summaries"):
        op.execute(f"drop table if exists scheduler.{table}")
