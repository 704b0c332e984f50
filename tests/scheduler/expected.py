"""Expected figures computed straight from the rows a test created, minute by minute in
the user's zone: deliberately not the scheduler's own window arithmetic."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.scheduler.conftest import Event, Session

MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Expected:
    total_work_seconds: int
    active_seconds: int
    idle_seconds: int
    productivity_score: float
    sessions_count: int
    top_apps: list[list[object]]


def local_day_of(moment: datetime, tz: str) -> date:
    return moment.astimezone(ZoneInfo(tz)).date()


def worked_minutes(session: Session, tz: str, day: date, as_of: datetime) -> int:
    """Minutes of the session (all times are whole minutes) whose local date is ``day``."""
    end = min(session.end or as_of, as_of)
    minute, count = session.start, 0
    while minute < end:
        if local_day_of(minute, tz) == day:
            count += 1
        minute += MINUTE
    return count


def expected_day(sessions: list[Session], events: list[Event], tz: str, day: date, as_of: datetime) -> Expected:
    minutes = [worked_minutes(s, tz, day, as_of) for s in sessions]
    mine = [e for e in events if local_day_of(e.at, tz) == day]
    active = sum(e.seconds for e in mine if e.kind == "active")
    idle = sum(e.seconds for e in mine if e.kind == "idle")
    apps: dict[str, int] = defaultdict(int)
    for e in mine:
        if e.kind == "active" and e.app:
            apps[e.app] += e.seconds
    top = sorted(apps.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return Expected(
        total_work_seconds=60 * sum(minutes),
        active_seconds=active,
        idle_seconds=idle,
        productivity_score=round(100 * active / (active + idle), 2) if active + idle else 0.0,
        sessions_count=sum(1 for m in minutes if m),
        top_apps=[[name, secs] for name, secs in top if secs > 0],
    )


def local(tz: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0, fold: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)
