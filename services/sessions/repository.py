"""SQL for projects, work sessions and applied batches, on a connection the caller owns.

Nothing here opens or commits a transaction; row-level security scopes every statement
to the tenant the unit of work set.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.errors import UniqueViolation
from psycopg.rows import dict_row
from sqlalchemy import Row, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.sessions.domain import SESSION_UPDATE, ActivityDelta, HistoryQuery, Project, WorkSession
from workpulse.db import DriverConnection
from workpulse.errors import AlreadyExists
from workpulse.outbox import EVENTS_TOPIC

# workpulse.outbox.add notifies this channel; the relay of this schema listens on it.
OUTBOX_CHANNEL = "sessions_outbox"

_SESSION_COLUMNS = (
    "id::text, organization_id::text, user_id::text, project_id::text, start_time, end_time, status, "
    "total_active_seconds, total_idle_seconds, last_activity_at, version"
)
_PROJECT_COLUMNS = "id::text, organization_id::text, name, description, created_at, updated_at"


# The SESSION_UPDATE payload built in SQL from the updated row: the same keys and formats
# as WorkSession.event_payload(), the session object included (a test holds the two equal).
_UTC_ISO = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""


def _utc(column: str) -> str:
    return f"to_char({column} at time zone 'UTC', {_UTC_ISO})"


_SESSION_OBJECT = (
    "jsonb_build_object('id', id::text, 'user_id', user_id::text, 'organization_id', organization_id::text, "
    f"'project_id', project_id::text, 'start_time', {_utc('start_time')}, 'end_time', {_utc('end_time')}, "
    "'status', status, 'total_active_seconds', total_active_seconds, 'total_idle_seconds', total_idle_seconds, "
    f"'last_activity_at', {_utc('last_activity_at')}, 'version', version)"
)
_SESSION_EVENT = (
    "jsonb_build_object('sessionId', id::text, 'userId', user_id::text, 'organizationId', organization_id::text, "
    "'projectId', project_id::text, 'total_active_seconds', total_active_seconds, "
    "'total_idle_seconds', total_idle_seconds, 'status', status, 'version', version, "
    f"'startTime', {_utc('start_time')}, 'endTime', {_utc('end_time')}, 'session', {_SESSION_OBJECT})"
)
# psycopg placeholders: it runs on a direct transaction (ActivityApplications).
_APPLY_ONCE = (
    "with claimed as ("
    "  insert into sessions.applied_batches (organization_id, idempotency_key, session_id, event_count) "
    "  values (%(org)s, %(key)s, %(id)s, %(count)s) on conflict do nothing returning session_id"
    "), updated as ("
    "  update sessions.work_sessions set "
    "    total_active_seconds = total_active_seconds + %(active)s, "
    "    total_idle_seconds = total_idle_seconds + %(idle)s, "
    "    last_activity_at = greatest(last_activity_at, cast(%(last)s as timestamptz)), "
    "    last_active_at = greatest(last_active_at, cast(%(last_active)s as timestamptz)), "
    "    last_received_at = case when %(carries)s then now() else last_received_at end, "
    "    version = version + 1 "
    "  where organization_id = %(org)s and id = %(id)s and exists (select 1 from claimed) "
    "  returning *"
    "), event as ("
    "  insert into sessions.outbox (organization_id, topic, event_type, payload) "
    f"  select organization_id, %(topic)s, %(event_type)s, {_SESSION_EVENT} from updated "
    "  returning pg_notify(%(channel)s, '')"
    ") "
    "select (select count(*) from claimed) as claimed, (select count(*) from event) as notified, "
    f"{', '.join('updated.' + c.strip() for c in _SESSION_COLUMNS.split(', '))} "
    "from (values (1)) as one left join updated on true"
)
_RELEASE_CLAIM = "delete from sessions.applied_batches where organization_id = %s and idempotency_key = %s"
_GET_SESSION = f"select {_SESSION_COLUMNS} from sessions.work_sessions where organization_id = %s and id = %s"


def _session(row: Row[Any]) -> WorkSession:
    return WorkSession(**row._asdict())


def _project(row: Row[Any]) -> Project:
    return Project(**row._asdict())


class WorkSessionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def insert_active(self, organization_id: str, user_id: str, project_id: str | None) -> WorkSession | None:
        """The new session, or None when the user already has an active one (the partial
        unique index decides, so concurrent starts cannot both win)."""
        row = (
            await self._conn.execute(
                text(
                    "insert into sessions.work_sessions (organization_id, user_id, project_id) "
                    "values (:org, :user, :project) "
                    "on conflict (organization_id, user_id) where status = 'active' do nothing "
                    f"returning {_SESSION_COLUMNS}"
                ),
                {"org": organization_id, "user": user_id, "project": project_id},
            )
        ).first()
        return _session(row) if row else None

    async def active_of(self, organization_id: str, user_id: str) -> WorkSession | None:
        row = (
            await self._conn.execute(
                text(
                    f"select {_SESSION_COLUMNS} from sessions.work_sessions "
                    "where organization_id = :org and user_id = :user and status = 'active'"
                ),
                {"org": organization_id, "user": user_id},
            )
        ).first()
        return _session(row) if row else None

    async def get(self, organization_id: str, session_id: str, *, lock: bool = False) -> WorkSession | None:
        """The session; with ``lock``, its row locked until the transaction ends."""
        row = (
            await self._conn.execute(
                text(
                    f"select {_SESSION_COLUMNS} from sessions.work_sessions where organization_id = :org and id = :id"
                    + (" for update" if lock else "")
                ),
                {"org": organization_id, "id": session_id},
            )
        ).first()
        return _session(row) if row else None

    async def stop(
        self, organization_id: str, session_id: str, expected_version: int | None, end: datetime | None = None
    ) -> WorkSession | None:
        """Stops an active session in one guarded statement, at ``end`` (None: now); None
        when the guard failed."""
        row = (
            await self._conn.execute(
                text(
                    "update sessions.work_sessions "
                    "set status = 'stopped', end_time = greatest(coalesce(cast(:end as timestamptz), now()), "
                    "start_time), version = version + 1 "
                    "where organization_id = :org and id = :id and status = 'active' "
                    "and (cast(:expected as bigint) is null or version = cast(:expected as bigint)) "
                    f"returning {_SESSION_COLUMNS}"
                ),
                {"org": organization_id, "id": session_id, "expected": expected_version, "end": end},
            )
        ).first()
        return _session(row) if row else None

    async def active(self, organization_id: str, user_id: str | None) -> list[WorkSession]:
        rows = await self._conn.execute(
            text(
                f"select {_SESSION_COLUMNS} from sessions.work_sessions "
                "where organization_id = :org and status = 'active' "
                "and (cast(:user as uuid) is null or user_id = cast(:user as uuid)) "
                "order by start_time desc, id desc"
            ),
            {"org": organization_id, "user": user_id},
        )
        return [_session(r) for r in rows]

    async def history(self, organization_id: str, query: HistoryQuery) -> list[WorkSession]:
        """One page plus one row (so the caller knows whether another page follows)."""
        after_time: datetime | None = query.after.start_time if query.after else None
        after_id: str | None = query.after.session_id if query.after else None
        rows = await self._conn.execute(
            text(
                f"select {_SESSION_COLUMNS} from sessions.work_sessions "
                "where organization_id = :org "
                "and (cast(:user as uuid) is null or user_id = cast(:user as uuid)) "
                "and (cast(:project as uuid) is null or project_id = cast(:project as uuid)) "
                "and (cast(:status as text) is null or status = cast(:status as text)) "
                "and (cast(:since as timestamptz) is null or start_time >= cast(:since as timestamptz)) "
                "and (cast(:before as timestamptz) is null or start_time < cast(:before as timestamptz)) "
                "and (cast(:after_time as timestamptz) is null "
                "  or (start_time, id) < (cast(:after_time as timestamptz), cast(:after_id as uuid))) "
                "order by start_time desc, id desc limit :limit"
            ),
            {
                "org": organization_id,
                "user": query.user_id,
                "project": query.project_id,
                "status": query.status,
                "since": query.started_from,
                "before": query.started_before,
                "after_time": after_time,
                "after_id": after_id,
                "limit": query.page_size + 1,
            },
        )
        return [_session(r) for r in rows]


class ProjectRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def insert(self, organization_id: str, name: str, description: str, created_by: str) -> Project | None:
        """The new project, or None when a live project of that name exists."""
        row = (
            await self._conn.execute(
                text(
                    "insert into sessions.projects (organization_id, name, description, created_by) "
                    "values (:org, :name, :description, :by) "
                    "on conflict (organization_id, lower(name)) where deleted_at is null do nothing "
                    f"returning {_PROJECT_COLUMNS}"
                ),
                {"org": organization_id, "name": name, "description": description, "by": created_by},
            )
        ).first()
        return _project(row) if row else None

    async def get(self, organization_id: str, project_id: str) -> Project | None:
        row = (
            await self._conn.execute(
                text(
                    f"select {_PROJECT_COLUMNS} from sessions.projects "
                    "where organization_id = :org and id = :id and deleted_at is null"
                ),
                {"org": organization_id, "id": project_id},
            )
        ).first()
        return _project(row) if row else None

    async def list_live(self, organization_id: str) -> Sequence[Project]:
        rows = await self._conn.execute(
            text(
                f"select {_PROJECT_COLUMNS} from sessions.projects "
                "where organization_id = :org and deleted_at is null order by lower(name), id"
            ),
            {"org": organization_id},
        )
        return [_project(r) for r in rows]

    async def update(
        self, organization_id: str, project_id: str, name: str | None, description: str | None
    ) -> Project | None:
        """The updated project; None when absent. AlreadyExists when the new name is taken."""
        try:
            result = await self._conn.execute(
                text(
                    "update sessions.projects set name = coalesce(:name, name), "
                    "description = coalesce(:description, description), updated_at = now() "
                    "where organization_id = :org and id = :id and deleted_at is null "
                    f"returning {_PROJECT_COLUMNS}"
                ),
                {"org": organization_id, "id": project_id, "name": name, "description": description},
            )
        except IntegrityError as exc:
            if isinstance(exc.orig, UniqueViolation):
                raise AlreadyExists("a project with this name already exists", field="name") from None
            raise
        row = result.first()
        return _project(row) if row else None

    async def soft_delete(self, organization_id: str, project_id: str) -> bool:
        """Hides the project; its sessions keep their project_id for history and reports."""
        result = await self._conn.execute(
            text(
                "update sessions.projects set deleted_at = now(), updated_at = now() "
                "where organization_id = :org and id = :id and deleted_at is null"
            ),
            {"org": organization_id, "id": project_id},
        )
        return bool(result.rowcount)


class ActivityApplications:
    """Totals hand-offs on a :meth:`UnitOfWork.direct` transaction (the hot path)."""

    def __init__(self, conn: DriverConnection) -> None:
        self._conn = conn

    async def apply_once(self, delta: ActivityDelta) -> tuple[bool, WorkSession | None]:
        """(claimed, session after): claims the idempotency key and, if it was new, adds the
        seconds and writes SESSION_UPDATE to the outbox, all in ONE statement.

        Appends commute: a single atomic UPDATE with no version check, so concurrent appends
        to one session queue briefly on its row lock and all succeed. One round trip keeps
        that lock short. A concurrent claim of the same key waits for the first transaction
        and then claims nothing. (True, None) means the session does not exist: the caller
        releases the claim or rolls back. The activity anchors (latest event, latest active
        event, receipt) move in the same statement, so a resent hand-off moves none of them.
        """
        cursor = self._conn.cursor(row_factory=dict_row)
        await cursor.execute(
            _APPLY_ONCE,
            {
                "org": delta.organization_id,
                "id": delta.session_id,
                "key": delta.idempotency_key,
                "count": delta.event_count,
                "active": delta.active_seconds,
                "idle": delta.idle_seconds,
                "last": delta.last_activity_at,
                "last_active": delta.latest_active,
                "carries": delta.carries_activity,
                "topic": EVENTS_TOPIC,
                "event_type": SESSION_UPDATE,
                "channel": OUTBOX_CHANNEL,
            },
        )
        fields = await cursor.fetchone()
        assert fields is not None  # the statement always returns its one row
        claimed = bool(fields.pop("claimed"))
        fields.pop("notified")
        return claimed, (WorkSession(**fields) if fields["id"] is not None else None)

    async def release_claim(self, delta: ActivityDelta) -> None:
        """Undoes the key claimed for a session that does not exist (nothing was counted)."""
        await self._conn.execute(_RELEASE_CLAIM, [delta.organization_id, delta.idempotency_key])

    async def get(self, organization_id: str, session_id: str) -> WorkSession | None:
        cursor = await self._conn.execute(_GET_SESSION, [organization_id, session_id])
        row = await cursor.fetchone()
        return WorkSession(*row) if row else None
