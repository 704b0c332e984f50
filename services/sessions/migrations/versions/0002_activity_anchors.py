"""Two more anchors of a session's activity, so idle can be told from a silent agent.

``last_activity_at`` is the latest timestamp of any applied event, active or idle: an
agent reporting idle moves it, and an agent that died leaves it where it was, so time
since it means neither "idle" nor "agent gone". Now:

- ``last_active_at``: the latest timestamp of an applied *active* event (the user's
  last input); idle is time since it, while the agent keeps sending;
- ``last_received_at``: when a hand-off that carried activity was last applied (the
  server's receipt, not the agent's clock); agent silence is time since it.

Both move in the hand-off's one guarded statement, only when its key was claimed, so a
resent hand-off moves neither (as it adds no seconds). Open sessions get them from
``last_activity_at`` (the best there is for activity before this revision); stopped
sessions need neither.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from workpulse.postgres import MAINTENANCE_ROLE

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("alter table sessions.work_sessions add column last_active_at timestamptz")
    op.execute("alter table sessions.work_sessions add column last_received_at timestamptz")
    # As the maintenance role, which sees every tenant (FORCE ROW LEVEL SECURITY hides the
    # rows from the table owner).
    op.execute(f"set local role {MAINTENANCE_ROLE}")
    op.execute(
        "update sessions.work_sessions set "
        "last_active_at = case when total_active_seconds > 0 then last_activity_at end, "
        "last_received_at = last_activity_at "
        "where status = 'active' and last_activity_at is not null"
    )
    op.execute("reset role")


def downgrade() -> None:
    op.execute("alter table sessions.work_sessions drop column last_received_at")
    op.execute("alter table sessions.work_sessions drop column last_active_at")
