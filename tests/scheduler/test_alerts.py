"""Idle and overtime checks with a fixed clock: who gets an alert, on which local day, with
which outbox event, exactly once; thresholds per organization."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import grpc
import pytest

from services.scheduler.domain import IDLE_CHECK, OVERTIME_CHECK
from tests.scheduler.conftest import Person, Rig, World
from tests.scheduler.expected import local
from workpulse.scheduler.v1 import scheduler_pb2 as pb


async def alerts_of(world: World, *orgs: str) -> list[tuple[object, ...]]:
    return await world.rows(
        "select type, user_id::text, session_id::text, alert_date, idle_minutes, work_hours::float8, resolved_at "
        "from scheduler.alerts where organization_id = any(cast(:orgs as uuid[])) order by user_id, session_id",
        orgs=list(orgs),
    )


async def events_of(world: World, *orgs: str) -> list[tuple[str, dict[str, object]]]:
    rows = await world.rows(
        "select event_type, payload from scheduler.outbox where organization_id = any(cast(:orgs as uuid[])) "
        "order by id",
        orgs=list(orgs),
    )
    return [(t, p if isinstance(p, dict) else json.loads(p)) for t, p in rows]


async def admin_of(world: World, org: str) -> Person:
    return await world.user(org, role="admin")


async def test_idle_check_alerts_once_per_session_and_day(rig: Rig, world: World) -> None:
    now = datetime(2026, 8, 10, 15, 0, tzinfo=UTC)
    kiritimati = await world.organization("Pacific/Kiritimati")  # local date is already the 11th
    strict = await world.organization()
    admin = await admin_of(world, strict)
    await rig.stub.UpdateAlertSettings(
        pb.UpdateAlertSettingsRequest(idle_minutes=10, overtime_hours=9), metadata=admin.md
    )
    people = [await world.user(kiritimati) for _ in range(6)]
    others = [await world.user(strict) for _ in range(2)]

    def m(minutes: int) -> datetime:
        return now - timedelta(minutes=minutes)

    # Idle: the agent keeps reporting (idle events up to now), no active input since.
    idle6 = await world.session(people[0], m(120), last_activity_at=m(0), idle_since=m(6))
    await world.session(people[1], m(60), last_activity_at=m(2))  # active recently: no alert
    # Agent silent, not idle: nothing received for longer than the allowance (120 s).
    await world.session(people[2], m(10))  # never heard from
    await world.session(people[5], m(90), last_activity_at=m(6))  # active, then nothing
    await world.session(people[3], m(300), m(180), last_activity_at=m(180))  # stopped: no alert
    edge = await world.session(people[4], m(30), last_activity_at=m(0), idle_since=m(5))  # exactly five minutes
    await world.session(others[0], m(60), last_activity_at=m(0), idle_since=m(6))  # under this org's 10 minutes
    over10 = await world.session(others[1], m(60), last_activity_at=m(1), idle_since=m(11))

    runner = rig.runner()
    run = await runner.run(IDLE_CHECK, now)
    assert run is not None and run.error is None
    found = await alerts_of(world, kiritimati, strict)
    expected = {
        (idle6.id, date(2026, 8, 11), 6),
        (edge.id, date(2026, 8, 11), 5),
        (over10.id, date(2026, 8, 10), 11),
    }
    assert {(r[2], r[3], r[4]) for r in found} == expected
    assert all(r[0] == "INACTIVE_ALERT" and r[6] is None for r in found)
    events = await events_of(world, kiritimati, strict)
    assert sorted((e["sessionId"], e["idleMinutes"]) for t, e in events if t == "INACTIVE_ALERT") == sorted(
        (sid, minutes) for sid, _, minutes in expected
    )
    for _, payload in events:
        assert {"userId", "sessionId", "message", "idleMinutes"} <= set(payload)
        assert f"{payload['idleMinutes']} minutes" in str(payload["message"])

    # A minute later they are all still idle: no second alert, no second event.
    assert (await runner.run(IDLE_CHECK, now + timedelta(minutes=1))) is not None
    assert len(await alerts_of(world, kiritimati, strict)) == 3
    assert len(await events_of(world, kiritimati, strict)) == 3

    # Activity resumes in one session: its alert is resolved, the others stay open.
    await world.touch(idle6, now + timedelta(minutes=1))
    await runner.run(IDLE_CHECK, now + timedelta(minutes=2))
    resolved = {r[2]: r[6] for r in await alerts_of(world, kiritimati, strict)}
    assert resolved[idle6.id] == now + timedelta(minutes=2)
    assert {sid for sid, at in resolved.items() if at is None} == {edge.id, over10.id}

    # Their agents fall silent: nobody can tell whether the users came back, so their
    # alerts stay open, and no alert is raised for silence.
    await runner.run(IDLE_CHECK, now + timedelta(minutes=10))
    later = {r[2]: r[6] for r in await alerts_of(world, kiritimati, strict)}
    assert {sid for sid, at in later.items() if at is None} == {edge.id, over10.id} and len(later) == 3


async def test_overtime_check_counts_the_local_day(rig: Rig, world: World) -> None:
    tz = "Pacific/Kiritimati"
    org = await world.organization(tz)
    lenient = await world.organization(tz)
    admin = await admin_of(world, lenient)
    await rig.stub.UpdateAlertSettings(
        pb.UpdateAlertSettingsRequest(idle_minutes=5, overtime_hours=11), metadata=admin.md
    )

    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return local(tz, 2026, 9, day, hour, minute)

    as_of = at(15, 12)  # 22:00 UTC on the 14th: a slot of the 30-minute check
    assert as_of == datetime(2026, 9, 14, 22, 0, tzinfo=UTC)
    straddler, short, running, relaxed = (
        await world.user(org),
        await world.user(org),
        await world.user(org),
        await world.user(lenient),
    )
    # 23:00 on the 14th to 09:30 on the 15th: only the 9 h 30 min after local midnight count.
    await world.session(straddler, at(14, 23), at(15, 9, 30))
    await world.session(short, at(15, 0), at(15, 8, 59))  # 8 h 59 min: under 9 h
    await world.session(running, at(15, 2))  # active: 10 h at the as-of time
    await world.session(relaxed, at(15, 1, 45))  # 10 h 15 min, then 10 h 45 min: never over this org's 11 h

    runner = rig.runner()
    run = await runner.run(OVERTIME_CHECK, as_of)
    assert run is not None and run.error is None
    found = await alerts_of(world, org, lenient)
    assert sorted((r[1], r[3], r[5]) for r in found) == sorted(
        [(straddler.id, date(2026, 9, 15), 9.5), (running.id, date(2026, 9, 15), 10.0)]
    )
    assert all(r[0] == "OVERTIME_ALERT" and r[2] is None for r in found)
    events = await events_of(world, org, lenient)
    assert sorted((e["userId"], e["workHours"]) for _, e in events) == sorted([(straddler.id, 9.5), (running.id, 10.0)])
    assert all(t == "OVERTIME_ALERT" and "sessionId" not in e and e["message"] for t, e in events)

    # Half an hour later the running session is still over: no second alert that day.
    await runner.run(OVERTIME_CHECK, as_of + timedelta(minutes=30))
    assert len(await alerts_of(world, org, lenient)) == 2
    assert len(await events_of(world, org, lenient)) == 2


async def test_alert_listing_pages_and_filters(rig: Rig, world: World) -> None:
    now = datetime(2026, 8, 20, 15, 0, tzinfo=UTC)
    org = await world.organization()
    manager = await world.user(org, role="manager")
    people = [await world.user(org) for _ in range(3)]
    for p in people:
        await world.session(p, now - timedelta(hours=2), last_activity_at=now, idle_since=now - timedelta(minutes=7))
    await rig.runner().run(IDLE_CHECK, now)

    seen: list[str] = []
    token = ""
    while True:
        reply = await rig.stub.ListAlerts(pb.ListAlertsRequest(page_size=2, page_token=token), metadata=manager.md)
        assert len(reply.alerts) <= 2
        seen.extend(a.id for a in reply.alerts)
        token = reply.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 3

    mine = await rig.stub.ListAlerts(pb.ListAlertsRequest(), metadata=people[0].md)
    assert [a.user_id for a in mine.alerts] == [people[0].id]
    overtime = await rig.stub.ListAlerts(pb.ListAlertsRequest(type=pb.ALERT_TYPE_OVERTIME), metadata=manager.md)
    assert list(overtime.alerts) == []
    dated = await rig.stub.ListAlerts(
        pb.ListAlertsRequest(start_date="2026-08-21", end_date="2026-08-21"), metadata=manager.md
    )
    assert list(dated.alerts) == []


@pytest.mark.parametrize(
    ("idle_minutes", "overtime_hours", "field"),
    [(0, 9.0, "idle_minutes"), (1441, 9.0, "idle_minutes"), (5, 0.0, "overtime_hours"), (5, 24.01, "overtime_hours")],
)
async def test_alert_settings_out_of_range_are_refused_over_grpc(
    rig: Rig, world: World, idle_minutes: int, overtime_hours: float, field: str
) -> None:
    admin = await admin_of(world, await world.organization())
    request = pb.UpdateAlertSettingsRequest(idle_minutes=idle_minutes, overtime_hours=overtime_hours)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await rig.stub.UpdateAlertSettings(request, metadata=admin.md)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith(field), refused.value.details()
    assert dict(refused.value.trailing_metadata() or ())["wp-field"] == field
    kept = await rig.stub.GetAlertSettings(pb.GetAlertSettingsRequest(), metadata=admin.md)
    assert (kept.settings.idle_minutes, kept.settings.overtime_hours) == (5, 9.0)
    # The limits themselves are allowed.
    edge = pb.UpdateAlertSettingsRequest(idle_minutes=1440, overtime_hours=24.0)
    saved = await rig.stub.UpdateAlertSettings(edge, metadata=admin.md)
    assert (saved.settings.idle_minutes, saved.settings.overtime_hours) == (1440, 24.0)
