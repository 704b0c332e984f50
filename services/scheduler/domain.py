"""Rules of the scheduled work: local days, job slots, summaries and alert wording.

Plain Python: no grpc, no SQLAlchemy. Times are aware datetimes in UTC unless named local.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workpulse.errors import InvalidArgument

DAILY_SUMMARIES = "daily_summaries"
IDLE_CHECK = "idle_check"
OVERTIME_CHECK = "overtime_check"
ACTIVITY_PARTITIONS = "activity_partitions"

INACTIVE_ALERT = "INACTIVE_ALERT"
OVERTIME_ALERT = "OVERTIME_ALERT"

DEFAULT_IDLE_MINUTES = 5
DEFAULT_OVERTIME_HOURS = 9.0
# The agent policy's default allowance (ingest.proto, AgentPolicy.agent_silence_seconds).
DEFAULT_AGENT_SILENCE_SECONDS = 120
MAX_REPORT_DAYS = 366


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job's cadence. Slots are the multiples of ``period`` since the epoch; ``catch_up_all``
    jobs replay every missed slot after downtime, the others only the latest one (an old idle
    check cannot be answered any more)."""

    name: str
    period: timedelta
    catch_up_all: bool


JOBS: dict[str, JobSpec] = {
    # Zones with :30 and :45 offsets have their midnights on quarter hours.
    DAILY_SUMMARIES: JobSpec(DAILY_SUMMARIES, timedelta(minutes=15), catch_up_all=True),
    IDLE_CHECK: JobSpec(IDLE_CHECK, timedelta(minutes=1), catch_up_all=False),
    OVERTIME_CHECK: JobSpec(OVERTIME_CHECK, timedelta(minutes=30), catch_up_all=False),
    ACTIVITY_PARTITIONS: JobSpec(ACTIVITY_PARTITIONS, timedelta(hours=6), catch_up_all=False),
}


def job_spec(name: str) -> JobSpec:
    spec = JOBS.get(name)
    if spec is None:
        raise InvalidArgument(f"unknown job {name!r}; known jobs: {', '.join(sorted(JOBS))}", field="name")
    return spec


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise InvalidArgument("times must carry a UTC offset", field="as_of")
    return moment.astimezone(UTC)


def slot_of(moment: datetime, period: timedelta) -> datetime:
    """The start of the slot ``moment`` falls in."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((utc(moment) - epoch) // period) * period


def slots_between(after: datetime, until: datetime, period: timedelta) -> list[datetime]:
    """Slot starts s with after < s <= until, oldest first."""
    first = slot_of(after, period) + period
    found = []
    while first <= until:
        found.append(first)
        first += period
    return found


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class UserZone:
    organization_id: str
    user_id: str
    timezone: str

    @staticmethod
    def effective(organization_id: str, user_id: str, user_tz: str, organization_tz: str) -> UserZone:
        """A user's own zone when they chose one ("UTC" is auth's default, so it means
        "not chosen"), else the organization's."""
        chosen = user_tz if user_tz and user_tz != "UTC" else organization_tz or "UTC"
        return UserZone(organization_id, user_id, chosen)


@dataclass(frozen=True, slots=True)
class UserWindow:
    """One user's local day ``date`` as the UTC interval [start, end)."""

    organization_id: str
    user_id: str
    date: date
    timezone: str
    start: datetime
    end: datetime


def local_day(tz: str, day: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a local calendar day: 23 or 25 hours long on DST change days."""
    z = zone(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=z)
    after = day + timedelta(days=1)
    end = datetime(after.year, after.month, after.day, tzinfo=z)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_date(tz: str, moment: datetime) -> date:
    return utc(moment).astimezone(zone(tz)).date()


def window(user: UserZone, day: date) -> UserWindow:
    start, end = local_day(user.timezone, day)
    return UserWindow(user.organization_id, user.user_id, day, user.timezone, start, end)


def days_ended_between(users: list[UserZone], after: datetime, until: datetime) -> list[UserWindow]:
    """The local days whose end (the next local midnight) lies in (after, until]. Users are
    grouped by zone so the zone arithmetic runs once per zone, not per user."""
    by_zone: dict[str, list[UserZone]] = {}
    for u in users:
        by_zone.setdefault(u.timezone, []).append(u)
    found: list[UserWindow] = []
    for tz, members in by_zone.items():
        day = local_date(tz, until) - timedelta(days=1)
        days = []
        while True:
            start, end = local_day(tz, day)
            if end <= after:
                break
            if end <= until:
                days.append((day, start, end))
            day -= timedelta(days=1)
        for day, start, end in days:
            found.extend(UserWindow(u.organization_id, u.user_id, day, tz, start, end) for u in members)
    return found


def day_so_far(users: list[UserZone], as_of: datetime) -> list[UserWindow]:
    """Each user's current local day, from its midnight up to ``as_of``."""
    by_zone: dict[str, list[UserZone]] = {}
    for u in users:
        by_zone.setdefault(u.timezone, []).append(u)
    found: list[UserWindow] = []
    for tz, members in by_zone.items():
        day = local_date(tz, as_of)
        start, _ = local_day(tz, day)
        found.extend(UserWindow(u.organization_id, u.user_id, day, tz, start, utc(as_of)) for u in members)
    return found


@dataclass(frozen=True, slots=True)
class AppUsage:
    app_name: str
    active_seconds: int


@dataclass(frozen=True, slots=True)
class DailySummary:
    organization_id: str
    user_id: str
    date: date
    timezone: str
    total_work_seconds: int
    active_seconds: int
    idle_seconds: int
    productivity_score: float
    sessions_count: int
    top_apps: tuple[AppUsage, ...] = ()
    computed_at: datetime | None = None

    @property
    def agent_silent_seconds(self) -> int:
        """Work time no event covers: the session was open, its agent sent nothing (dead,
        offline and never back, or stopped). Neither active nor idle: nobody knows."""
        return max(0, self.total_work_seconds - self.active_seconds - self.idle_seconds)


def productivity_score(active_seconds: int, idle_seconds: int) -> float:
    """Share of recorded time that was active, in percent with two decimals."""
    total = active_seconds + idle_seconds
    return round(100.0 * active_seconds / total, 2) if total else 0.0


@dataclass(frozen=True, slots=True)
class Thresholds:
    idle_minutes: int = DEFAULT_IDLE_MINUTES
    overtime_hours: float = DEFAULT_OVERTIME_HOURS


@dataclass(frozen=True, slots=True)
class AlertDraft:
    organization_id: str
    user_id: str
    session_id: str | None
    type: str
    alert_date: date
    message: str
    idle_minutes: int | None = None
    work_hours: float | None = None


def inactive_alert(organization_id: str, user_id: str, session_id: str, day: date, idle_seconds: int) -> AlertDraft:
    minutes = idle_seconds // 60
    return AlertDraft(
        organization_id,
        user_id,
        session_id,
        INACTIVE_ALERT,
        day,
        f"No activity for {minutes} minutes in an active session",
        idle_minutes=minutes,
    )


def overtime_alert(organization_id: str, user_id: str, day: date, worked_seconds: int, limit: float) -> AlertDraft:
    hours = math.floor(worked_seconds / 36) / 100
    return AlertDraft(
        organization_id,
        user_id,
        None,
        OVERTIME_ALERT,
        day,
        f"Worked {hours:.2f} hours on {day.isoformat()}, over the {limit:g} hour limit",
        work_hours=hours,
    )


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    organization_id: str
    user_id: str
    session_id: str | None
    type: str
    alert_date: date
    message: str
    created_at: datetime
    resolved_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    idle_minutes: int | None
    work_hours: float | None


@dataclass(frozen=True, slots=True)
class JobRun:
    job: str
    slot: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rows: int
    error: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class DateRange:
    start: date
    end: date


def parse_date(value: str, field_name: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"{field_name} must be a date YYYY-MM-DD, got {value!r}", field=field_name) from None


def parse_range(start: str, end: str, *, start_field: str = "startDate", end_field: str = "endDate") -> DateRange:
    if not start:
        raise InvalidArgument(f"{start_field} is required", field=start_field)
    if not end:
        raise InvalidArgument(f"{end_field} is required", field=end_field)
    found = DateRange(parse_date(start, start_field), parse_date(end, end_field))
    if found.end < found.start:
        raise InvalidArgument(f"{end_field} must not be before {start_field}", field=end_field)
    if (found.end - found.start).days + 1 > MAX_REPORT_DAYS:
        raise InvalidArgument(f"the range may span at most {MAX_REPORT_DAYS} days", field=end_field)
    return found


@dataclass(frozen=True, slots=True)
class UserReport:
    user_id: str
    range: DateRange
    summaries: list[DailySummary] = field(default_factory=list)

    @property
    def total_work_seconds(self) -> int:
        return sum(s.total_work_seconds for s in self.summaries)

    @property
    def total_active_seconds(self) -> int:
        return sum(s.active_seconds for s in self.summaries)

    @property
    def total_idle_seconds(self) -> int:
        return sum(s.idle_seconds for s in self.summaries)

    @property
    def total_agent_silent_seconds(self) -> int:
        return sum(s.agent_silent_seconds for s in self.summaries)

    @property
    def days_worked(self) -> int:
        return sum(1 for s in self.summaries if s.total_work_seconds > 0 or s.active_seconds > 0)

    @property
    def average_productivity_score(self) -> float:
        worked = [s.productivity_score for s in self.summaries if s.total_work_seconds > 0 or s.active_seconds > 0]
        return round(sum(worked) / len(worked), 2) if worked else 0.0


@dataclass(frozen=True, slots=True)
class WorkTotal:
    """Wall-clock seconds of a user's sessions inside one window, from the sessions service."""

    organization_id: str
    user_id: str
    window_start: datetime
    worked_seconds: int
    sessions_count: int


@dataclass(frozen=True, slots=True)
class ActivityTotal:
    """Recorded activity inside one window, from the ingest service."""

    organization_id: str
    user_id: str
    window_start: datetime
    active_seconds: int
    idle_seconds: int
    top_apps: tuple[AppUsage, ...]


@dataclass(frozen=True, slots=True)
class IdleSession:
    """An active session without active input for its idle threshold."""

    organization_id: str
    user_id: str
    session_id: str
    idle_seconds: int  # since the latest active event, or the start
    silent_seconds: int = 0  # since activity of any kind was last received, or the start

    def agent_silent(self, allowance_seconds: int) -> bool:
        """Whether nothing at all arrived for longer than the allowance: then the agent is
        not reporting (stopped, hung, offline) and the user's idleness is unknown, so the
        session is agent-silent rather than idle (realtime publishes USER_AGENT_SILENT)."""
        return self.silent_seconds > allowance_seconds


def summarize(window: UserWindow, work: WorkTotal | None, activity: ActivityTotal | None) -> DailySummary | None:
    """A user's day, or None when nothing at all happened in it."""
    if work is None and activity is None:
        return None
    active = activity.active_seconds if activity else 0
    idle = activity.idle_seconds if activity else 0
    return DailySummary(
        window.organization_id,
        window.user_id,
        window.date,
        window.timezone,
        work.worked_seconds if work else 0,
        active,
        idle,
        productivity_score(active, idle),
        work.sessions_count if work else 0,
        activity.top_apps if activity else (),
    )
