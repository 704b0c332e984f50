"""Identity: organizations, users, invites, refresh tokens and the outbox.

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

ROLES = "('admin', 'manager', 'employee')"

DDL = [
    # The organization is its own tenant: its RLS policy is keyed on id.
    """
    create table auth.organizations (
        id uuid primary key,
        name text not null check (length(name) between 1 and 200),
        plan_type text not null default 'free',
        timezone text not null default 'UTC',
        created_at timestamptz not null default now()
    )
    """,
    *tenant_table_policies("auth.organizations", tenant_column="id"),
    f"""
    create table auth.users (
        organization_id uuid not null references auth.organizations (id) on delete cascade,
        id uuid not null,
        email text not null check (email = lower(email)),
        name text not null,
        password_hash text not null,
        role text not null check (role in {ROLES}),
        status text not null default 'active' check (status in ('active', 'disabled')),
        timezone text not null default 'UTC',
        last_seen timestamptz,
        created_at timestamptz not null default now(),
        primary key (organization_id, id),
        unique (organization_id, email),
        unique (id)
    )
    """,
    "create index users_by_creation on auth.users (organization_id, created_at, id)",
    *tenant_table_policies("auth.users"),
    f"""
    create table auth.invites (
        organization_id uuid not null references auth.organizations (id) on delete cascade,
        id uuid not null,
        token_hash text not null,
        email text not null check (email = lower(email)),
        role text not null check (role in {ROLES}),
        created_by uuid not null,
        created_at timestamptz not null default now(),
        expires_at timestamptz not null,
        used_at timestamptz,
        used_by uuid,
        primary key (organization_id, id),
        unique (organization_id, token_hash),
        foreign key (organization_id, created_by) references auth.users (organization_id, id) on delete cascade
    )
    """,
    *tenant_table_policies("auth.invites"),
    """
    create table auth.refresh_tokens (
        organization_id uuid not null,
        id uuid not null,
        family_id uuid not null,
        user_id uuid not null,
        token_hash text not null,
        created_at timestamptz not null default now(),
        expires_at timestamptz not null,
        rotated_at timestamptz,
        revoked_at timestamptz,
        primary key (organization_id, id),
        unique (organization_id, token_hash),
        foreign key (organization_id, user_id) references auth.users (organization_id, id) on delete cascade
    )
    """,
    "create index refresh_tokens_by_family on auth.refresh_tokens (organization_id, family_id)",
    *tenant_table_policies("auth.refresh_tokens"),
    *outbox_ddl("auth"),
]


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    for table in ("outbox", "refresh_tokens", "invites", "users", "organizations"):
        op.execute(f"drop table if exists auth.{table}")
