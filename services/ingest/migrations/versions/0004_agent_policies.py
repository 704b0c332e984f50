"""The desktop agent's policy per organization, and the window title of activity events.

One row per organization: its version (bumped by every change; compared-and-set, so a
change made meanwhile is refused, never overwritten), the document (the organization's
defaults and per-user overrides, as jsonb: read whole, never queried inside), and who
changed it when. No row: version 0, the product's defaults. Tenancy as every ingest
table: row-level security on app.organization_id.

The title is nullable and has no default: adding it to the partitioned events table
(and every partition) is a catalog change, no rewrite; partitions made later copy it
(ensure_activity_partitions creates them LIKE the parent).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from workpulse.migrate import tenant_table_policies

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DDL = [
    """
    create table ingest.agent_policies (
        organization_id uuid primary key,
        version bigint not null check (version > 0),
        document jsonb not null check (jsonb_typeof(document) = 'object'),
        updated_at timestamptz not null default now(),
        updated_by uuid
    )
    """,
    *tenant_table_policies("ingest.agent_policies"),
    "alter table ingest.activity_logs add column title text check (length(title) <= 1024)",
]


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("alter table ingest.activity_logs drop column if exists title")
    op.execute("drop table if exists ingest.agent_policies")
