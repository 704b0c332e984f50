"""Today so far: the current local day computed live, with the numbers the nightly summary
stores for it once it ends; the same figures from GetDailySummary, GetUserReport and
ListTodaySummaries; who may ask for whom; bad input named."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest

from services.scheduler.domain import DAILY_SUMMARIES
from services.scheduler.jobs import JobConfig
from tests.scheduler.conftest import Event, Person, Rig, Session, World
from tests.scheduler.expected import Expected, expected_day
from workpulse.scheduler.v1 import scheduler_pb2 as pb

ZONES = ("UTC", "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kathmandu", "America/New_York")


def a_zone_well_inside_its_day(now: datetime) -> str:
    """A zone whose local day began at least 90 minutes ago and ends in more than 30: the
    test's sessions fit in today, and the day does not end while it runs."""
    for tz in ZONES:
        local = now.astimezone(ZoneInfo(tz))
        minutes = local.hour * 60 + local.minute
        if 90 <= minutes <= 23 * 60 + 30:
            return tz
    raise AssertionError("the zones above are spread over 26 hours: one is always inside its day")


def figures(s: pb.DailySummary) -> tuple[object, ...]:
    return (
        s.date,
        s.total_work_seconds,
        s.active_seconds,
        s.idle_seconds,
        s.sessions_count,
        s.productivity_score,
        [[a.app_name, a.active_seconds] for a in s.top_apps],
    )


def wanted(day: date, want: Expected) -> tuple[object, ...]:
    return (
        day.isoformat(),
        want.total_work_seconds,
        want.active_seconds,
        want.idle_seconds,
        want.sessions_count,
        want.productivity_score,
        want.top_apps,
    )


async def a_day_so_far(world: World, person: Person, tz: str) -> tuple[date, list[Session], list[Event]]:
    """A session across last midnight (its evening part is yesterday's) and one that ended
    two minutes ago, with events on both sides of midnight; whole minutes, as expected_day
    counts them."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    today = now.astimezone(ZoneInfo(tz)).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)
    across = await world.session(person, midnight - timedelta(hours=1), midnight + timedelta(minutes=10))
    recent = await world.session(person, now - timedelta(minutes=10), now - timedelta(minutes=2))
    before = [Event(midnight - timedelta(minutes=30), "active", 60, "Chrome")]  # yesterday: excluded
    after = [Event(midnight + timedelta(minutes=5), "active", 120, "Zoom")]
    work = [
        Event(now - timedelta(minutes=9), "active", 300, "VS Code"),
        Event(now - timedelta(minutes=5), "idle", 60, None),
    ]
    await world.events(across, before + after)
    await world.events(recent, work)
    return today, [across, recent], before + after + work


async def test_today_is_live_and_equals_what_the_nightly_summary_stores(rig: Rig, world: World) -> None:
    tz = a_zone_well_inside_its_day(datetime.now(UTC))
    org = await world.organization(tz)
    person = await world.user(org)
    manager = await world.user(org, role="manager")
    today, sessions, events = await a_day_so_far(world, person, tz)
    want = wanted(today, expected_day(sessions, events, tz, today, datetime.now(UTC)))
    assert want[1] == (10 + 8) * 60 and want[2] == 420  # by hand: 10 + 8 minutes; 120 + 300 s active

    daily = (await rig.stub.GetDailySummary(pb.GetDailySummaryRequest(), metadata=person.md)).summary
    assert figures(daily) == want and daily.HasField("computed_at")
    dated = pb.GetDailySummaryRequest(user_id=person.id, date=today.isoformat())
    assert figures((await rig.stub.GetDailySummary(dated, metadata=manager.md)).summary) == want
    span = pb.GetUserReportRequest(
        user_id=person.id, start_date=(today - timedelta(days=3)).isoformat(), end_date=today.isoformat()
    )
    report = await rig.stub.GetUserReport(span, metadata=manager.md)
    assert [figures(s) for s in report.daily_summaries] == [want]
    assert report.days_worked == 1 and report.total_active_seconds == 420
    listed = await rig.stub.ListTodaySummaries(
        pb.ListTodaySummariesRequest(user_ids=[manager.id, person.id]), metadata=manager.md
    )
    assert [s.user_id for s in listed.summaries] == [manager.id, person.id]
    assert figures(listed.summaries[1]) == want
    assert figures(listed.summaries[0]) == (today.isoformat(), 0, 0, 0, 0, 0.0, [])
    everyone = await rig.stub.ListTodaySummaries(pb.ListTodaySummariesRequest(), metadata=manager.md)
    assert sorted(s.user_id for s in everyone.summaries) == sorted([manager.id, person.id])
    own = await rig.stub.ListTodaySummaries(pb.ListTodaySummariesRequest(), metadata=person.md)
    assert [figures(s) for s in own.summaries] == [want]

    # Once the day is over, the nightly summary stores exactly these figures.
    midnight_after = datetime(today.year, today.month, today.day, tzinfo=ZoneInfo(tz)) + timedelta(days=1)
    run = await rig.runner().run(DAILY_SUMMARIES, midnight_after.astimezone(UTC) + JobConfig().summary_settle)
    assert run is not None and run.error is None
    rows = await world.rows(
        "select total_work_seconds, active_seconds, idle_seconds, sessions_count from scheduler.daily_summaries "
        "where organization_id = :org and user_id = :user and date = :day",
        org=org,
        user=person.id,
        day=today,
    )
    assert [tuple(r) for r in rows] == [want[1:5]]


async def test_who_may_ask_for_whom_and_bad_input(rig: Rig, world: World) -> None:
    org = await world.organization()
    employee = await world.user(org)
    colleague = await world.user(org)
    manager = await world.user(org, role="manager")
    stranger = await world.user(await world.organization())

    async def code(who: Person, ids: list[str]) -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await rig.stub.ListTodaySummaries(pb.ListTodaySummariesRequest(user_ids=ids), metadata=who.md)
        return refused.value.code()

    assert await code(employee, [colleague.id]) == grpc.StatusCode.PERMISSION_DENIED
    assert await code(manager, [colleague.id, "not-a-uuid"]) == grpc.StatusCode.INVALID_ARGUMENT
    assert await code(manager, [str(uuid.uuid4()) for _ in range(501)]) == grpc.StatusCode.INVALID_ARGUMENT
    # Another tenant's user, and nobody at all, are simply absent: no existence leaks.
    listed = await rig.stub.ListTodaySummaries(
        pb.ListTodaySummariesRequest(user_ids=[stranger.id, str(uuid.uuid4()), colleague.id, colleague.id]),
        metadata=manager.md,
    )
    assert [s.user_id for s in listed.summaries] == [colleague.id]
    mine = await rig.stub.ListTodaySummaries(pb.ListTodaySummariesRequest(user_ids=[employee.id]), metadata=employee.md)
    assert [s.user_id for s in mine.summaries] == [employee.id]
