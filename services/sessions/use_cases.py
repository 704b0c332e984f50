"""Use cases of the sessions service: plain async functions over a unit of work.

Each runs in one tenant transaction (retried on serialization failures and deadlocks),
writes its outbox event in that same transaction, and raises ``workpulse.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from services.sessions.domain import (
    MAX_APPLY_BATCH,
    SESSION_STARTED,
    SESSION_STOPPED,
    SESSION_UPDATE,
    ActivityDelta,
    HistoryQuery,
    PageCursor,
    Project,
    Viewer,
    WorkSession,
    optional_uuid,
    page_size,
    project_description,
    project_name,
    require_uuid,
    status_filter,
)
from services.sessions.repository import ActivityApplications, ProjectRepository, WorkSessionRepository
from workpulse import outbox
from workpulse.db import UnitOfWork, direct_switch_tenant
from workpulse.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from workpulse.identity import Principal

SCHEMA = "sessions"
MANAGING_ROLES = ("admin", "manager")


def _viewer(principal: Principal) -> Viewer:
    return Viewer(principal.subject, principal.sees_organization)


def _user_tenant(principal: Principal) -> str:
    if principal.is_service:
        raise PermissionDenied("this call needs a user of an organization")
    return principal.tenant()


async def start_session(uow: UnitOfWork, principal: Principal, project_id: str) -> WorkSession:
    org = _user_tenant(principal)
    project = optional_uuid(project_id, "project_id")

    async def work() -> WorkSession:
        async with uow.tenant(org) as conn:
            if project is not None and await ProjectRepository(conn).get(org, project) is None:
                raise NotFound("project not found", field="project_id")
            sessions = WorkSessionRepository(conn)
            # The partial unique index arbitrates; the loop only covers an active session
            # that was stopped between our insert and our look-up.
            for _ in range(3):
                created = await sessions.insert_active(org, principal.subject, project)
                if created is not None:
                    await outbox.add(conn, SCHEMA, org, SESSION_STARTED, created.event_payload())
                    return created
                active = await sessions.active_of(org, principal.subject)
                if active is not None:
                    raise AlreadyExists(f"an active session already exists: {active.id}")
            raise Unavailable("session state changed concurrently, retry")

    return await uow.retrying(work)


class ActivityWindows(Protocol):
    async def close(self, organization_id: str, session_id: str) -> datetime:
        """Ends the session's activity window in ingest for good; the end to stop it at."""


async def stop_session(
    uow: UnitOfWork,
    windows: ActivityWindows | None,
    principal: Principal,
    session_id: str,
    expected_version: int | None,
) -> WorkSession:
    """Stops the session. With ``windows`` (ingest is deployed), ingest closes the session's
    activity window first, under the session's row lock, and the stop takes ingest's end:
    from the moment the stop commits no event stamped after it is stored, and none stored
    is stamped later. A stop whose commit fails after the close leaves the window closed;
    its retry finds the same end."""
    org = _user_tenant(principal)
    sid = require_uuid(session_id, "session_id")

    async def work() -> WorkSession:
        async with uow.tenant(org) as conn:
            sessions = WorkSessionRepository(conn)
            current = await sessions.get(org, sid, lock=True)
            if current is None or not _viewer(principal).may_see(current):
                raise NotFound("session not found")
            end = None
            if windows is not None and current.is_active and expected_version in (None, current.version):
                end = await windows.close(org, sid)
            stopped = await sessions.stop(org, sid, expected_version, end)
            if stopped is None:
                latest = await sessions.get(org, sid) or current
                if not latest.is_active:
                    raise FailedPrecondition("session is already stopped")
                raise Conflict(f"version mismatch: expected {expected_version}, current {latest.version}")
            payload = stopped.event_payload()
            # The original's clients learn of a stop only from SESSION_UPDATE (status
            # "stopped"); SESSION_STOPPED is this product's addition. Both commit with the stop.
            await outbox.add(conn, SCHEMA, org, SESSION_UPDATE, payload)
            await outbox.add(conn, SCHEMA, org, SESSION_STOPPED, payload)
            return stopped

    return await uow.retrying(work)


async def get_session(uow: UnitOfWork, principal: Principal, session_id: str, organization_id: str) -> WorkSession:
    """A user reads within their tenant; a service identity names the tenant."""
    sid = require_uuid(session_id, "session_id")
    if principal.is_service:
        org = require_uuid(organization_id, "organization_id")
        viewer = Viewer(principal.subject, sees_organization=True)
    else:
        org, viewer = principal.tenant(), _viewer(principal)
    async with uow.tenant(org) as conn:
        found = await WorkSessionRepository(conn).get(org, sid)
    if found is None or not viewer.may_see(found):
        raise NotFound("session not found")
    return found


async def list_active_sessions(uow: UnitOfWork, principal: Principal) -> list[WorkSession]:
    org = _user_tenant(principal)
    only_user = None if principal.sees_organization else principal.subject
    async with uow.tenant(org) as conn:
        return await WorkSessionRepository(conn).active(org, only_user)


async def list_sessions(
    uow: UnitOfWork,
    principal: Principal,
    *,
    user_id: str,
    project_id: str,
    started_from: datetime | None,
    started_before: datetime | None,
    status: str,
    requested_page_size: int,
    page_token: str,
) -> tuple[list[WorkSession], str]:
    """One page of history, newest first, and the token of the next page ('' at the end)."""
    org = _user_tenant(principal)
    user = optional_uuid(user_id, "user_id")
    if not principal.sees_organization:
        if user not in (None, principal.subject):
            raise PermissionDenied("employees see only their own sessions")
        user = principal.subject
    if started_from and started_before and started_from >= started_before:
        raise InvalidArgument("started_from must be before started_before", field="started_from")
    query = HistoryQuery(
        user_id=user,
        project_id=optional_uuid(project_id, "project_id"),
        started_from=started_from,
        started_before=started_before,
        status=status_filter(status),
        page_size=page_size(requested_page_size),
        after=PageCursor.decode(page_token) if page_token else None,
    )
    async with uow.tenant(org) as conn:
        rows = await WorkSessionRepository(conn).history(org, query)
    page = rows[: query.page_size]
    more = len(rows) > query.page_size
    return page, PageCursor.after_session(page[-1]).encode() if more else ""


async def apply_activity(uow: UnitOfWork, principal: Principal, delta: ActivityDelta) -> tuple[WorkSession, bool]:
    """Adds a hand-off from ingest once per idempotency key: (session after, duplicate?).

    Key, totals and SESSION_UPDATE commit together. No status check: ingest validated the
    time window, and events stamped before a stop still count after it.
    """
    if not principal.is_service:
        raise PermissionDenied("only services may apply activity")

    async def work() -> tuple[WorkSession, bool]:
        async with uow.direct(delta.organization_id) as conn:
            sessions = ActivityApplications(conn)
            claimed, updated = await sessions.apply_once(delta)
            if claimed:
                if updated is None:
                    raise NotFound("session not found")  # rolls the claimed key back too
                return updated, False
            current = await sessions.get(delta.organization_id, delta.session_id)
            if current is None:
                raise NotFound("session not found")
            return current, True

    return await uow.retrying(work)


async def apply_activities(
    uow: UnitOfWork, principal: Principal, deltas: Sequence[ActivityDelta]
) -> list[tuple[WorkSession, bool] | None]:
    """Many hand-offs, of any organizations, in one transaction: each as
    :func:`apply_activity` (session after, duplicate?), or None where the item's session
    does not exist in its organization (its key is released; nothing counted).

    Each item's statement runs with its own organization as the tenant. Items are applied
    in (organization, session) order, so concurrent batches take row locks in one order
    and queue instead of deadlocking.
    """
    if not principal.is_service:
        raise PermissionDenied("only services may apply activity")
    if len(deltas) > MAX_APPLY_BATCH:
        raise InvalidArgument(f"items: at most {MAX_APPLY_BATCH} per batch", field="items")
    order = sorted(range(len(deltas)), key=lambda i: (deltas[i].organization_id, deltas[i].session_id))

    async def work() -> list[tuple[WorkSession, bool] | None]:
        results: dict[int, tuple[WorkSession, bool] | None] = {}
        async with uow.direct(None) as conn:
            sessions = ActivityApplications(conn)
            tenant = None
            for i in order:
                delta = deltas[i]
                if delta.organization_id != tenant:
                    tenant = delta.organization_id
                    await direct_switch_tenant(conn, tenant)
                claimed, updated = await sessions.apply_once(delta)
                if claimed and updated is None:
                    await sessions.release_claim(delta)
                    results[i] = None
                elif claimed and updated is not None:
                    results[i] = (updated, False)
                else:
                    current = await sessions.get(delta.organization_id, delta.session_id)
                    results[i] = (current, True) if current is not None else None
        return [results[i] for i in range(len(deltas))]

    return await uow.retrying(work)


def activity_delta(
    *,
    organization_id: str,
    session_id: str,
    idempotency_key: str,
    active_seconds: int,
    idle_seconds: int,
    last_activity_at: datetime | None,
    event_count: int,
    last_active_at: datetime | None = None,
) -> ActivityDelta:
    return ActivityDelta(
        organization_id=require_uuid(organization_id, "organization_id"),
        session_id=require_uuid(session_id, "session_id"),
        idempotency_key=idempotency_key,
        active_seconds=active_seconds,
        idle_seconds=idle_seconds,
        last_activity_at=last_activity_at,
        event_count=event_count,
        last_active_at=last_active_at,
    )


async def create_project(uow: UnitOfWork, principal: Principal, name: str, description: str) -> Project:
    principal.require_role(*MANAGING_ROLES)
    org = principal.tenant()
    clean_name, clean_description = project_name(name), project_description(description)
    async with uow.tenant(org) as conn:
        created = await ProjectRepository(conn).insert(org, clean_name, clean_description, principal.subject)
    if created is None:
        raise AlreadyExists("a project with this name already exists", field="name")
    return created


async def get_project(uow: UnitOfWork, principal: Principal, project_id: str) -> Project:
    org = _user_tenant(principal)
    pid = require_uuid(project_id, "project_id")
    async with uow.tenant(org) as conn:
        found = await ProjectRepository(conn).get(org, pid)
    if found is None:
        raise NotFound("project not found")
    return found


async def list_projects(uow: UnitOfWork, principal: Principal) -> Sequence[Project]:
    org = _user_tenant(principal)
    async with uow.tenant(org) as conn:
        return await ProjectRepository(conn).list_live(org)


async def update_project(
    uow: UnitOfWork, principal: Principal, project_id: str, name: str | None, description: str | None
) -> Project:
    principal.require_role(*MANAGING_ROLES)
    org = principal.tenant()
    pid = require_uuid(project_id, "project_id")
    clean_name = project_name(name) if name is not None else None
    clean_description = project_description(description) if description is not None else None
    async with uow.tenant(org) as conn:
        updated = await ProjectRepository(conn).update(org, pid, clean_name, clean_description)
    if updated is None:
        raise NotFound("project not found")
    return updated


async def delete_project(uow: UnitOfWork, principal: Principal, project_id: str) -> None:
    """Hides the project; sessions that used it keep their project_id."""
    principal.require_role(*MANAGING_ROLES)
    org = principal.tenant()
    pid = require_uuid(project_id, "project_id")
    async with uow.tenant(org) as conn:
        deleted = await ProjectRepository(conn).soft_delete(org, pid)
    if not deleted:
        raise NotFound("project not found")
