"""SQL for the auth schema. Each repository works on the connection it is given (a tenant
transaction of the unit of work) and never commits: row-level security scopes every query
to the transaction's tenant, and the explicit organization filters serve the indexes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.errors import UniqueViolation
from sqlalchemy import Row, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.auth.domain import (
    Credentials,
    Invite,
    Organization,
    RefreshTokenRecord,
    Role,
    User,
    UserStatus,
)
from workpulse.errors import AlreadyExists

# The last column is the user's organization's workspace name (the transaction's tenant row).
_USER_COLUMNS = (
    "id::text, organization_id::text, email, name, role, status, timezone, last_seen, created_at, "
    "(select o.workspace from auth.organizations o where o.id = organization_id) as workspace"
)
_ORGANIZATION_COLUMNS = "id::text, name, plan_type, timezone, created_at, workspace"
_INVITE_COLUMNS = "id::text, organization_id::text, email, role, created_by::text, expires_at, used_at"
_TOKEN_COLUMNS = "id::text, organization_id::text, family_id::text, user_id::text, expires_at, rotated_at, revoked_at"


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        organization_id=row.organization_id,
        email=row.email,
        name=row.name,
        role=Role(row.role),
        status=UserStatus(row.status),
        timezone=row.timezone,
        last_seen=row.last_seen,
        created_at=row.created_at,
        workspace=row.workspace,
    )


def _organization(row: Row[Any]) -> Organization:
    return Organization(row.id, row.name, row.plan_type, row.timezone, row.created_at, row.workspace)


def _invite(row: Row[Any]) -> Invite:
    return Invite(
        id=row.id,
        organization_id=row.organization_id,
        email=row.email,
        role=Role(row.role),
        created_by=row.created_by,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


class OrganizationRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, organization_id: str, name: str, timezone: str, workspace: str) -> Organization | None:
        """The new organization, or None when another one has that workspace name (in any
        letter case; the unique index decides, also between concurrent sign-ups, and
        sees every tenant's rows where this role sees none)."""
        row = (
            await self._conn.execute(
                text(
                    "insert into auth.organizations (id, name, timezone, workspace) values (:id, :name, :tz, :ws) "
                    f"on conflict ((lower(workspace))) do nothing returning {_ORGANIZATION_COLUMNS}"
                ),
                {"id": organization_id, "name": name, "tz": timezone, "ws": workspace},
            )
        ).one_or_none()
        return _organization(row) if row is not None else None

    async def get(self, organization_id: str) -> Organization | None:
        row = (
            await self._conn.execute(
                text(f"select {_ORGANIZATION_COLUMNS} from auth.organizations where id = :id"),
                {"id": organization_id},
            )
        ).one_or_none()
        return _organization(row) if row is not None else None

    async def rename_workspace(self, organization_id: str, workspace: str) -> Organization | None:
        """The organization under its new workspace name (None: no such organization);
        AlreadyExists when another organization has that name."""
        try:
            result = await self._conn.execute(
                text(f"update auth.organizations set workspace = :ws where id = :id returning {_ORGANIZATION_COLUMNS}"),
                {"id": organization_id, "ws": workspace},
            )
        except IntegrityError as exc:
            if isinstance(exc.orig, UniqueViolation):
                raise AlreadyExists("workspace: already taken", field="workspace") from None
            raise
        row = result.one_or_none()
        return _organization(row) if row is not None else None


class WorkspaceDirectory:
    """Workspace name to organization id, before any tenant is known (log-in by name).

    Works on a maintenance connection: the runtime role sees no organization until its
    tenant is set. It answers this one question and returns nothing else of the row."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def organization_id(self, workspace: str) -> str | None:
        found = await self._conn.execute(
            text("select id::text from auth.organizations where lower(workspace) = lower(:ws)"), {"ws": workspace}
        )
        return found.scalar_one_or_none()


class UserRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(
        self,
        *,
        user_id: str,
        organization_id: str,
        email: str,
        name: str,
        password_hash: str,
        role: Role,
    ) -> User | None:
        """The new user, or None when the organization already has a user with that email.
        Their time zone starts as UTC, meaning "not chosen": the organization's applies."""
        row = (
            await self._conn.execute(
                text(
                    "insert into auth.users (organization_id, id, email, name, password_hash, role) "
                    "values (:org, :id, :email, :name, :hash, :role) "
                    f"on conflict (organization_id, email) do nothing returning {_USER_COLUMNS}"
                ),
                {
                    "org": organization_id,
                    "id": user_id,
                    "email": email,
                    "name": name,
                    "hash": password_hash,
                    "role": role.value,
                },
            )
        ).one_or_none()
        return _user(row) if row is not None else None

    async def get(self, organization_id: str, user_id: str) -> User | None:
        row = (
            await self._conn.execute(
                text(f"select {_USER_COLUMNS} from auth.users where organization_id = :org and id = :id"),
                {"org": organization_id, "id": user_id},
            )
        ).one_or_none()
        return _user(row) if row is not None else None

    async def email_taken(self, organization_id: str, email: str) -> bool:
        result = await self._conn.execute(
            text("select 1 from auth.users where organization_id = :org and email = :email"),
            {"org": organization_id, "email": email},
        )
        return result.first() is not None

    async def credentials(self, organization_id: str, email: str) -> Credentials | None:
        row = (
            await self._conn.execute(
                text(
                    f"select {_USER_COLUMNS}, password_hash from auth.users "
                    "where organization_id = :org and email = :email"
                ),
                {"org": organization_id, "email": email},
            )
        ).one_or_none()
        return Credentials(_user(row), row.password_hash) if row is not None else None

    async def touch_last_seen(self, organization_id: str, user_id: str) -> User:
        row = (
            await self._conn.execute(
                text(
                    "update auth.users set last_seen = now() where organization_id = :org and id = :id "
                    f"returning {_USER_COLUMNS}"
                ),
                {"org": organization_id, "id": user_id},
            )
        ).one()
        return _user(row)

    async def many(self, organization_id: str, user_ids: list[str]) -> list[User]:
        """The named users of the organization, in creation order (unknown ids left out)."""
        rows = await self._conn.execute(
            text(
                f"select {_USER_COLUMNS} from auth.users where organization_id = :org "
                "and id = any(cast(:ids as uuid[])) order by created_at, id"
            ),
            {"org": organization_id, "ids": user_ids},
        )
        return [_user(r) for r in rows]

    async def page(self, organization_id: str, *, after: tuple[datetime, str] | None, limit: int) -> list[User]:
        """Users in creation order, ``limit`` of them after the ``(created_at, id)`` cursor."""
        cursor = "and (created_at, id) > (:after_ts, cast(:after_id as uuid)) " if after else ""
        params: dict[str, object] = {"org": organization_id, "limit": limit}
        if after is not None:
            params["after_ts"], params["after_id"] = after
        rows = await self._conn.execute(
            text(
                f"select {_USER_COLUMNS} from auth.users where organization_id = :org {cursor}"
                "order by created_at, id limit :limit"
            ),
            params,
        )
        return [_user(row) for row in rows]


class InviteRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(
        self,
        *,
        invite_id: str,
        organization_id: str,
        token_hash: str,
        email: str,
        role: Role,
        created_by: str,
        ttl_hours: int,
    ) -> Invite:
        row = (
            await self._conn.execute(
                text(
                    "insert into auth.invites (organization_id, id, token_hash, email, role, created_by, expires_at) "
                    "values (:org, :id, :hash, :email, :role, :by, now() + make_interval(hours => :hours)) "
                    f"returning {_INVITE_COLUMNS}"
                ),
                {
                    "org": organization_id,
                    "id": invite_id,
                    "hash": token_hash,
                    "email": email,
                    "role": role.value,
                    "by": created_by,
                    "hours": ttl_hours,
                },
            )
        ).one()
        return _invite(row)

    async def lock_by_token(self, organization_id: str, token_hash: str) -> Invite | None:
        """The invite with that token, locked until the transaction ends (single use under races)."""
        row = (
            await self._conn.execute(
                text(
                    f"select {_INVITE_COLUMNS} from auth.invites "
                    "where organization_id = :org and token_hash = :hash for update"
                ),
                {"org": organization_id, "hash": token_hash},
            )
        ).one_or_none()
        return _invite(row) if row is not None else None

    async def mark_used(self, organization_id: str, invite_id: str, user_id: str) -> None:
        await self._conn.execute(
            text(
                "update auth.invites set used_at = now(), used_by = :user "
                "where organization_id = :org and id = :id and used_at is null"
            ),
            {"org": organization_id, "id": invite_id, "user": user_id},
        )


class RefreshTokenRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(
        self,
        *,
        token_id: str,
        organization_id: str,
        family_id: str,
        user_id: str,
        token_hash: str,
        ttl_seconds: int,
    ) -> None:
        await self._conn.execute(
            text(
                "insert into auth.refresh_tokens "
                "(organization_id, id, family_id, user_id, token_hash, expires_at) "
                "values (:org, :id, :family, :user, :hash, now() + make_interval(secs => :ttl))"
            ),
            {
                "org": organization_id,
                "id": token_id,
                "family": family_id,
                "user": user_id,
                "hash": token_hash,
                "ttl": ttl_seconds,
            },
        )

    async def lock_by_hash(self, organization_id: str, token_hash: str) -> RefreshTokenRecord | None:
        """The token with that hash, locked so two concurrent refreshes cannot both rotate it."""
        row = (
            await self._conn.execute(
                text(
                    f"select {_TOKEN_COLUMNS} from auth.refresh_tokens "
                    "where organization_id = :org and token_hash = :hash for update"
                ),
                {"org": organization_id, "hash": token_hash},
            )
        ).one_or_none()
        if row is None:
            return None
        return RefreshTokenRecord(
            row.id, row.organization_id, row.family_id, row.user_id, row.expires_at, row.rotated_at, row.revoked_at
        )

    async def mark_rotated(self, organization_id: str, token_id: str) -> None:
        await self._conn.execute(
            text("update auth.refresh_tokens set rotated_at = now() where organization_id = :org and id = :id"),
            {"org": organization_id, "id": token_id},
        )

    async def revoke_family(self, organization_id: str, family_id: str) -> int:
        result = await self._conn.execute(
            text(
                "update auth.refresh_tokens set revoked_at = now() "
                "where organization_id = :org and family_id = :family and revoked_at is null"
            ),
            {"org": organization_id, "family": family_id},
        )
        return int(result.rowcount or 0)
