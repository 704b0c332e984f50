"""Daily summaries with a fixed clock, across UTC+14, UTC-12 and both daylight-saving
change days, checked against figures computed minute by minute from the created rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from services.scheduler.domain import DAILY_SUMMARIES
from services.scheduler.jobs import JobConfig
from tests.scheduler.conftest import Event, Person, Rig, Session, World
from tests.scheduler.expected import Expected, expected_day, local
from workpulse.scheduler.v1 import scheduler_pb2 as pb

# Scheduled summaries wait this long after a local midnight (late uploads still count).
SETTLE = JobConfig().summary_settle
APPS = ["VS Code", "Chrome", "Slack", "Figma", "Terminal", "Zoom", "Mail"]


@dataclass
class Day:
    person: Person
    tz: str
    day: date
    as_of: datetime
    sessions: list[Session]
    events: list[Event]

    def expected(self) -> Expected:
        return expected_day(self.sessions, self.events, self.tz, self.day, self.as_of)


async def busy_day(world: World, person: Person, tz: str, day: date) -> Day:
    """Sessions and events that straddle both local midnights and the DST hour."""
    prev, nxt = day - timedelta(days=1), day + timedelta(days=1)

    def at(d: date, h: int, m: int = 0) -> datetime:
        return local(tz, d.year, d.month, d.day, h, m)

    s1 = await world.session(person, at(prev, 22), at(day, 1, 30))
    s2 = await world.session(person, at(day, 1, 45), at(day, 3, 30))
    s3 = await world.session(person, at(day, 9), at(day, 17))
    s4 = await world.session(person, at(day, 22))  # still active at the run
    e1 = [
        Event(at(prev, 23, 59), "active", 60, "Chrome"),  # the day before: excluded
        Event(at(day, 0, 0), "active", 120, "VS Code"),  # the first instant: included
        Event(at(day, 1, 0), "idle", 300, None),
    ]
    e2 = [Event(at(day, 1, 50), "active", 90, "Terminal"), Event(at(day, 3, 10), "idle", 200, None)]
    e3: list[Event] = []
    for i in range(48):
        moment = at(day, 9) + timedelta(minutes=10 * i)
        kind = "idle" if i % 5 == 4 else "active"
        e3.append(Event(moment, kind, 60 + (i * 37) % 500, APPS[i % len(APPS)] if kind == "active" else None))
    e4 = [
        Event(at(day, 23, 59), "active", 30, "Zoom"),
        Event(at(nxt, 0, 0), "active", 45, "Zoom"),  # the next day: excluded
    ]
    for session, events in ((s1, e1), (s2, e2), (s3, e3), (s4, e4)):
        await world.events(session, events)
    return Day(person, tz, day, at(nxt, 0), [s1, s2, s3, s4], e1 + e2 + e3 + e4)


async def stored(world: World, person: Person) -> list[dict[str, object]]:
    rows = await world.rows(
        "select date, timezone, total_work_seconds, active_seconds, idle_seconds, productivity_score::float8, "
        "sessions_count, top_apps, computed_at from scheduler.daily_summaries "
        "where organization_id = :org and user_id = :user order by date",
        org=person.org,
        user=person.id,
    )
    keys = ("date", "timezone", "work", "active", "idle", "score", "count", "apps", "computed_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def matches(row: dict[str, object], day: Day) -> None:
    want = day.expected()
    assert row["date"] == day.day
    assert row["timezone"] == day.tz
    assert (row["work"], row["active"], row["idle"], row["count"]) == (
        want.total_work_seconds,
        want.active_seconds,
        want.idle_seconds,
        want.sessions_count,
    )
    assert row["score"] == want.productivity_score
    assert row["apps"] == want.top_apps


async def test_summaries_follow_each_users_local_midnight(rig: Rig, world: World) -> None:
    kiritimati = await world.user(await world.organization("Pacific/Kiritimati"))
    baker = await world.user(await world.organization("Etc/GMT+12"))
    new_york_org = await world.organization("America/New_York")
    new_york = await world.user(new_york_org)
    berlin = await world.user(new_york_org, timezone="Europe/Berlin")  # the user's own zone wins

    days = [
        await busy_day(world, kiritimati, "Pacific/Kiritimati", date(2026, 6, 15)),
        await busy_day(world, baker, "Etc/GMT+12", date(2026, 6, 15)),
        await busy_day(world, new_york, "America/New_York", date(2026, 11, 1)),  # 25-hour day
        await busy_day(world, berlin, "Europe/Berlin", date(2026, 3, 29)),  # 23-hour day
    ]
    assert days[2].as_of - local("America/New_York", 2026, 11, 1) == timedelta(hours=25)
    assert days[3].as_of - local("Europe/Berlin", 2026, 3, 29) == timedelta(hours=23)
    # The two extreme zones are 26 hours apart: the same date ends at 10:00 and 12:00 UTC the next day.
    assert (days[0].as_of.hour, days[1].as_of.hour) == (10, 12)

    runner = rig.runner()
    for day in days:
        before = await runner.run(DAILY_SUMMARIES, day.as_of - timedelta(minutes=15) + SETTLE)
        assert before is not None and before.error is None
        assert await stored(world, day.person) == [], "summarized before the user's local midnight"
        run = await runner.run(DAILY_SUMMARIES, day.as_of + SETTLE)
        assert run is not None and run.error is None and run.rows >= 1
        rows = await stored(world, day.person)
        assert len(rows) == 1
        matches(rows[0], day)

    # Spot-check one figure by hand: the New York day holds s1's 90 minutes after midnight,
    # s2 from 01:45 EDT to 03:30 EST (2 h 45 min: the hour repeats), s3's 8 h and s4's 2 h.
    assert days[2].expected().total_work_seconds == (90 + 165 + 480 + 120) * 60


async def test_reruns_change_nothing_and_reports_show_the_rows(rig: Rig, world: World) -> None:
    person = await world.user(await world.organization("Asia/Kathmandu"))  # UTC+5:45
    day = await busy_day(world, person, "Asia/Kathmandu", date(2026, 7, 2))
    runner = rig.runner()
    first = await runner.run(DAILY_SUMMARIES, day.as_of + SETTLE)
    assert first is not None and first.error is None
    rows = await stored(world, person)
    matches(rows[0], day)

    assert await runner.run(DAILY_SUMMARIES, day.as_of + SETTLE) is None  # the slot is done: skipped
    again = await runner.run(DAILY_SUMMARIES, day.as_of + SETTLE, manual=True)  # by hand: recomputed
    assert again is not None and again.error is None and again.attempts == 2
    assert await stored(world, person) == rows  # same figures, not even computed_at moved

    reply = await rig.stub.GetDailySummary(pb.GetDailySummaryRequest(date="2026-07-02"), metadata=person.md)
    want = day.expected()
    s = reply.summary
    assert (s.total_work_seconds, s.active_seconds, s.idle_seconds, s.sessions_count) == (
        want.total_work_seconds,
        want.active_seconds,
        want.idle_seconds,
        want.sessions_count,
    )
    assert s.productivity_score == want.productivity_score
    assert json.loads(json.dumps([[a.app_name, a.active_seconds] for a in s.top_apps])) == want.top_apps

    report = await rig.stub.GetUserReport(
        pb.GetUserReportRequest(user_id=person.id, start_date="2026-07-01", end_date="2026-07-03"), metadata=person.md
    )
    assert report.days_worked == 1 and len(report.daily_summaries) == 1
    assert report.total_work_seconds == want.total_work_seconds
    assert report.average_productivity_score == want.productivity_score
