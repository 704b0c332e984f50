"""Session bounds without a per-write row: writes serialise with a stop by an advisory lock.

Every write used to upsert its sessions' bounds rows (to lock them and record the latest
stamp): a tuple write and its WAL on every request. Writes now take a shared advisory
lock per session (no tuple, no WAL) and read the end; CloseSession takes the exclusive
lock, so it waits for the writes in flight, and then reads the latest stored stamp from
the events themselves. The bounds row is written by the stop alone, and the recorded
latest stamp goes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("alter table ingest.session_bounds drop column latest_stamp")


def downgrade() -> None:
    op.execute("alter table ingest.session_bounds add column latest_stamp timestamptz")
