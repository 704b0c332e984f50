"""Workspace names: every organization gets a unique, human-readable name people log in with.

Existing organizations get the name derived from theirs (services.auth.domain, as at
sign-up), oldest first, so the oldest keeps the plain name and later ones get ``-2``,
``-3``, ... The rows are read and written as the maintenance role, which sees every
tenant (FORCE ROW LEVEL SECURITY hides them from the table owner), then the column
becomes NOT NULL, checked and unique regardless of letter case.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.auth.domain import derive_workspace, workspace_candidates
from workpulse.postgres import MAINTENANCE_ROLE

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# What services.auth.domain.check_workspace accepts.
WORKSPACE_CHECK = "length(workspace) between 3 and 63 and workspace ~ '^[a-z][a-z0-9]*(-[a-z0-9]+)*$'"
# Only for rows inserted without one (the service always gives one): "org-" and 12 hex digits.
WORKSPACE_DEFAULT = "'org-' || substr(md5(gen_random_uuid()::text), 1, 12)"


def assign_workspaces(conn: sa.Connection) -> dict[str, str]:
    """Names every organization that has none; returns id to name for those it named."""
    taken = {
        w
        for (w,) in conn.execute(sa.text("select lower(workspace) from auth.organizations where workspace is not null"))
    }
    unnamed = conn.execute(
        sa.text("select id::text, name from auth.organizations where workspace is null order by created_at, id")
    ).all()
    named: dict[str, str] = {}
    for org_id, name in unnamed:
        chosen = next(c for c in workspace_candidates(derive_workspace(name)) if c not in taken)
        taken.add(chosen)
        named[org_id] = chosen
    if named:
        conn.execute(
            sa.text("update auth.organizations set workspace = :ws where id = cast(:id as uuid)"),
            [{"id": org_id, "ws": ws} for org_id, ws in named.items()],
        )
    return named


def upgrade() -> None:
    op.execute("alter table auth.organizations add column workspace text")
    op.execute(f"set local role {MAINTENANCE_ROLE}")
    assign_workspaces(op.get_bind())
    op.execute("reset role")
    op.execute(f"alter table auth.organizations alter column workspace set default ({WORKSPACE_DEFAULT})")
    op.execute("alter table auth.organizations alter column workspace set not null")
    op.execute(f"alter table auth.organizations add constraint organizations_workspace_form check ({WORKSPACE_CHECK})")
    op.execute("create unique index organizations_workspace_key on auth.organizations (lower(workspace))")


def downgrade() -> None:
    op.execute("drop index if exists auth.organizations_workspace_key")
    op.execute("alter table auth.organizations drop column if exists workspace")
