"""Session bounds: the end of each session's activity window, owned by ingest.

A stop is final from the moment it commits, on every replica, only if the check of an
event against the session's end and the end itself are serialised. Every write takes the
session's bounds row (an upsert, so it is locked), refuses events stamped after its end
and records the latest stamp it stores; CloseSession sets the end to the later of the
database's clock and that latest stamp, under the same row lock.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from workpulse.migrate import tenant_table_policies

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DDL = [
    """
    create table ingest.session_bounds (
        organization_id uuid not null,
        session_id uuid not null,
        end_time timestamptz,
        latest_stamp timestamptz,
        primary key (organization_id, session_id)
    )
    """,
    *tenant_table_policies("ingest.session_bounds"),
]


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("drop table if exists ingest.session_bounds")
