"""Reports, alerts and settings as plain async functions of (unit of work, caller, args).

Employees read only their own data; managers and admins their organization's. A user
that auth does not know in the caller's organization is NotFound, whoever asks.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from services.scheduler import repository, summaries
from services.scheduler.domain import (
    INACTIVE_ALERT,
    OVERTIME_ALERT,
    Alert,
    DailySummary,
    DateRange,
    JobRun,
    Thresholds,
    UserReport,
    UserZone,
    local_date,
    parse_date,
    parse_range,
)
from services.scheduler.mesh import Peers
from services.scheduler.runner import JobRunner
from workpulse.db import UnitOfWork
from workpulse.errors import InvalidArgument, NotFound, PermissionDenied
from workpulse.identity import Principal

EXPORT_BATCH = 1000


@dataclass(frozen=True)
class Reports:
    """What the report use cases need: the tenant unit of work and the peers (for users'
    existence and time zones)."""

    uow: UnitOfWork
    peers: Peers
    top_apps: int = 5


def _uuid(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{field} must be a UUID", field=field) from None


async def _target(reports: Reports, caller: Principal, user_id: str, field: str = "userId") -> tuple[str, str]:
    """The user a read is about (the caller when empty) and their time zone."""
    org = caller.tenant()
    target = _uuid(user_id, field) if user_id else caller.subject
    if not caller.sees_organization and target != caller.subject:
        raise PermissionDenied("employees can read only their own reports")
    tz = await reports.peers.zone_of(org, target)
    if tz is None:
        raise NotFound("user not found")
    return target, tz


async def daily_summary(reports: Reports, caller: Principal, user_id: str, day: str) -> DailySummary:
    """A user's summary of one local date (today in their zone when empty); zeros when
    nothing was recorded that day. Today is computed live, not read from the nightly job."""
    target, tz = await _target(reports, caller, user_id)
    now = datetime.now(UTC)
    today = local_date(tz, now)
    when = parse_date(day, "date") if day else today
    if when == today:
        [(window, live)] = await summaries.today_so_far(
            reports.peers, [UserZone(caller.tenant(), target, tz)], now, reports.top_apps
        )
        return live or replace(summaries.zero(window), computed_at=now)
    async with reports.uow.tenant(caller.tenant()) as conn:
        found = await repository.summaries_of(conn, target, when, when)
    return found[0] if found else DailySummary(caller.tenant(), target, when, tz, 0, 0, 0, 0.0, 0)


async def user_report(reports: Reports, caller: Principal, user_id: str, start: str, end: str) -> UserReport:
    """A user's summarized days over a range; a range holding their today holds its live
    numbers (when anything was recorded yet)."""
    span = parse_range(start, end)
    target, tz = await _target(reports, caller, user_id)
    async with reports.uow.tenant(caller.tenant()) as conn:
        stored = await repository.summaries_of(conn, target, span.start, span.end)
    now = datetime.now(UTC)
    today = local_date(tz, now)
    if span.start <= today <= span.end:
        [(_, live)] = await summaries.today_so_far(
            reports.peers, [UserZone(caller.tenant(), target, tz)], now, reports.top_apps
        )
        stored = [s for s in stored if s.date != today] + ([live] if live is not None else [])
    return UserReport(target, span, sorted(stored, key=lambda s: s.date))


MAX_TODAY_USERS = 500


async def today_summaries(reports: Reports, caller: Principal, user_ids: Sequence[str]) -> list[DailySummary]:
    """Each named member's today so far (zeros when nothing yet), in the order named; every
    member the caller may see when none is named. Ids auth does not know in the caller's
    organization are left out: a batch read says nothing of another tenant's users."""
    if len(user_ids) > MAX_TODAY_USERS:
        raise InvalidArgument(f"userIds holds at most {MAX_TODAY_USERS} ids", field="userIds")
    org = caller.tenant()
    wanted = list(dict.fromkeys(_uuid(u, "userIds") for u in user_ids))
    if not caller.sees_organization:
        if any(u != caller.subject for u in wanted):
            raise PermissionDenied("employees can read only their own reports")
        wanted = [caller.subject]
    if wanted:
        zones = [UserZone(org, u, tz) for u in wanted if (tz := await reports.peers.zone_of(org, u)) is not None]
    else:
        # Auth's list as last read (at most the zone cache's TTL old).
        zones = [z for z in await reports.peers.user_zones() if z.organization_id == org]
    now = datetime.now(UTC)
    found = await summaries.today_so_far(reports.peers, zones, now, reports.top_apps)
    return [live or replace(summaries.zero(w), computed_at=now) for w, live in found]


async def export_summaries(
    reports: Reports, caller: Principal, start: str, end: str, user_id: str
) -> AsyncIterator[list[DailySummary]]:
    caller.require_role("admin", "manager")
    span: DateRange = parse_range(start, end)
    target = (await _target(reports, caller, user_id))[0] if user_id else None
    async with reports.uow.tenant(caller.tenant()) as conn:
        async for batch in repository.stream_summaries(conn, span.start, span.end, target, EXPORT_BATCH):
            yield batch


_TYPES = {"": None, "INACTIVE_ALERT": INACTIVE_ALERT, "OVERTIME_ALERT": OVERTIME_ALERT}


@dataclass(frozen=True)
class AlertFilter:
    user_id: str = ""
    type: str = ""
    acknowledged: bool | None = None
    start_date: str = ""
    end_date: str = ""
    page_size: int = 50
    page_token: str = ""


def _token(alert: Alert) -> str:
    return base64.urlsafe_b64encode(f"{alert.created_at.isoformat()}|{alert.id}".encode()).decode()


def _after(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        at, _, alert_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return datetime.fromisoformat(at), str(uuid.UUID(alert_id))
    except ValueError:
        raise InvalidArgument("pageToken is not valid", field="pageToken") from None


async def list_alerts(reports: Reports, caller: Principal, f: AlertFilter) -> tuple[list[Alert], str]:
    org = caller.tenant()
    if f.type not in _TYPES:
        raise InvalidArgument("type must be INACTIVE_ALERT or OVERTIME_ALERT", field="type")
    if not 1 <= f.page_size <= 500:
        raise InvalidArgument("pageSize must be between 1 and 500", field="pageSize")
    user: str | None = _uuid(f.user_id, "userId") if f.user_id else None
    if not caller.sees_organization:
        if user not in (None, caller.subject):
            raise PermissionDenied("employees can read only their own alerts")
        user = caller.subject
    start: date | None = parse_date(f.start_date, "startDate") if f.start_date else None
    end: date | None = parse_date(f.end_date, "endDate") if f.end_date else None
    if start and end and end < start:
        raise InvalidArgument("endDate must not be before startDate", field="endDate")
    async with reports.uow.tenant(org) as conn:
        found = await repository.list_alerts(
            conn,
            user_id=user,
            alert_type=_TYPES[f.type],
            acknowledged=f.acknowledged,
            start=start,
            end=end,
            after=_after(f.page_token),
            limit=f.page_size + 1,
        )
    page = found[: f.page_size]
    return page, _token(page[-1]) if len(found) > f.page_size else ""


async def acknowledge_alert(reports: Reports, caller: Principal, alert_id: str) -> Alert:
    """Managers and admins acknowledge their organization's alerts, employees their own."""
    key = _uuid(alert_id, "id")
    async with reports.uow.tenant(caller.tenant()) as conn:
        found = await repository.get_alert(conn, key)
        if found is None or (not caller.sees_organization and found.user_id != caller.subject):
            raise NotFound("alert not found")
        acknowledged = await repository.acknowledge_alert(conn, key, caller.subject)
    assert acknowledged is not None
    return acknowledged


async def alert_settings(reports: Reports, caller: Principal) -> Thresholds:
    async with reports.uow.tenant(caller.tenant()) as conn:
        return await repository.thresholds_of(conn, caller.tenant())


async def update_alert_settings(reports: Reports, caller: Principal, idle_minutes: int, hours: float) -> Thresholds:
    caller.require_role("admin")
    if not 1 <= idle_minutes <= 1440:
        raise InvalidArgument("idle_minutes must be between 1 and 1440", field="idle_minutes")
    # Stored to the hundredth: below 0.01 it would be stored as 0 (a check violation). NaN fails too.
    if not 0.01 <= hours <= 24:
        raise InvalidArgument("overtime_hours must be at least 0.01 and at most 24", field="overtime_hours")
    wanted = Thresholds(idle_minutes, round(hours, 2))
    async with reports.uow.tenant(caller.tenant()) as conn:
        await repository.save_thresholds(conn, caller.tenant(), wanted)
    return wanted


async def run_job(runner: JobRunner, name: str, as_of: datetime | None) -> JobRun:
    """A run by hand (the servicer declares RunJob service-only: jobs cross every tenant)."""
    run = await runner.run(name, as_of, manual=True)
    assert run is not None
    return run
