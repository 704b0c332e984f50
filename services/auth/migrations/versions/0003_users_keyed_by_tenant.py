"""Users are unique per organization only: the unique index on ``id`` alone goes.

Sharded by ``organization_id`` (Citus, ARCHITECTURE.md §8), a unique index must contain
the distribution column, or the database cannot enforce it shard by shard. ``unique
(id)`` did not, and nothing needs it: no foreign key references ``users (id)`` (invites
and refresh tokens reference ``(organization_id, id)``), and every lookup of a user names
its organization (explicitly, or through the row-level security policy, which adds
``organization_id = <tenant>`` to every query of the runtime role), so the primary key
``(organization_id, id)`` serves them all; no index replaces the one dropped. User ids
are random UUIDs, as unlikely to repeat across organizations as before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("alter table auth.users drop constraint if exists users_id_key")


def downgrade() -> None:
    op.execute("alter table auth.users add constraint users_id_key unique (id)")
