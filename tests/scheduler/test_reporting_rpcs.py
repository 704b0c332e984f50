"""The cross-tenant reporting RPCs the scheduler reads through (auth's user zones, sessions'
work totals and idle sessions, ingest's activity totals and partitions), called with a
service identity on rows this test wrote, each answer checked against figures worked out
here by hand; malformed requests are INVALID_ARGUMENT naming the field.

Every answer spans all tenants, so each check looks at this test's own rows only."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.scheduler.conftest import Event, Rig, World
from tests.support import TokenFactory
from workpulse.auth.v1 import auth_reporting_pb2, auth_reporting_pb2_grpc
from workpulse.ingest.v1 import ingest_reporting_pb2 as ipb
from workpulse.ingest.v1 import ingest_reporting_pb2_grpc
from workpulse.sessions.v1 import sessions_reporting_pb2 as spb
from workpulse.sessions.v1 import sessions_reporting_pb2_grpc

Metadata = tuple[tuple[str, str], ...]
DAY = datetime(2026, 4, 14, tzinfo=UTC)


def stamp(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


@pytest.fixture
async def channel(rig: Rig) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(rig.reporting_address) as opened:
        yield opened


@pytest.fixture(scope="session")
def service(tokens: TokenFactory) -> Metadata:
    return (("authorization", f"Bearer {tokens.service('scheduler')}"),)


async def invalid_argument(call: Any) -> grpc.aio.AioRpcError:
    """The error a call ends with (streams are read to the end)."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value
    return raised.value


def names_field(error: grpc.aio.AioRpcError, field: str) -> None:
    assert field in (error.details() or ""), error.details()
    assert dict(error.trailing_metadata() or ())["wp-field"] == field


async def test_user_zones_stream_every_active_user_in_batches(
    world: World, owner_engine: AsyncEngine, channel: grpc.aio.Channel, service: Metadata
) -> None:
    org = await world.organization("Asia/Kathmandu")
    berliner = await world.user(org, timezone="Europe/Berlin")
    local = await world.user(org, timezone="Asia/Kathmandu")
    gone = await world.user(org)
    async with owner_engine.begin() as conn:
        await conn.execute(text("update auth.users set status = 'disabled' where id = :id"), {"id": gone.id})
    other = await world.user(await world.organization("Pacific/Kiritimati"))
    stub = auth_reporting_pb2_grpc.AuthReportingServiceStub(channel)
    batches = [
        list(reply.users)
        async for reply in stub.StreamUserZones(
            auth_reporting_pb2.StreamUserZonesRequest(batch_size=2), metadata=service
        )
    ]
    assert batches and all(1 <= len(b) <= 2 for b in batches)
    mine = {
        (u.user_id, u.user_timezone, u.organization_timezone)
        for b in batches
        for u in b
        if u.organization_id in (org, other.org)
    }
    assert mine == {
        (berliner.id, "Europe/Berlin", "Asia/Kathmandu"),
        (local.id, "Asia/Kathmandu", "Asia/Kathmandu"),
        (other.id, "UTC", "Pacific/Kiritimati"),
    }


async def test_user_zones_narrow_to_named_users_of_one_organization(
    world: World, channel: grpc.aio.Channel, service: Metadata
) -> None:
    org = await world.organization("Asia/Kathmandu")
    named, unnamed = await world.user(org, timezone="Europe/Berlin"), await world.user(org)
    stranger = await world.user(await world.organization())
    stub = auth_reporting_pb2_grpc.AuthReportingServiceStub(channel)

    async def zones(request: auth_reporting_pb2.StreamUserZonesRequest) -> set[tuple[str, str]]:
        return {
            (u.organization_id, u.user_id)
            async for r in stub.StreamUserZones(request, metadata=service)
            for u in r.users
        }

    ask = auth_reporting_pb2.StreamUserZonesRequest
    assert await zones(ask(organization_id=org)) == {(org, named.id), (org, unnamed.id)}
    assert await zones(ask(organization_id=org, user_ids=[named.id, stranger.id])) == {(org, named.id)}
    for bad, field in (
        (ask(organization_id="nope"), "organization_id"),
        (ask(user_ids=[named.id]), "user_ids"),
        (ask(organization_id=org, user_ids=["nope"]), "user_ids"),
        (ask(organization_id=org, user_ids=[named.id] * 1001), "user_ids"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await zones(bad)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        names_field(raised.value, field)


def window(org: str, user: str, start: datetime, end: datetime) -> spb.UserWindow:
    return spb.UserWindow(organization_id=org, user_id=user, start=stamp(start), end=stamp(end))


async def work_totals(
    stub: sessions_reporting_pb2_grpc.SessionsReportingServiceAsyncStub,
    metadata: Metadata,
    windows: list[spb.UserWindow],
    as_of: datetime,
) -> dict[tuple[str, str, datetime], tuple[int, int]]:
    request = spb.StreamWorkTotalsRequest(windows=windows, as_of=stamp(as_of), batch_size=1)
    found = {}
    async for reply in stub.StreamWorkTotals(request, metadata=metadata):
        assert len(reply.totals) <= 1
        for t in reply.totals:
            key = (t.organization_id, t.user_id, t.window_start.ToDatetime(tzinfo=UTC))
            found[key] = (t.worked_seconds, t.sessions_count)
    return found


async def test_work_totals_clip_sessions_to_each_window_and_to_as_of(
    world: World, channel: grpc.aio.Channel, service: Metadata
) -> None:
    org = await world.organization()
    worker = await world.user(org)
    idle_colleague = await world.user(org)
    await world.session(worker, at(-1), at(1))  # 23:00 the day before .. 01:00
    await world.session(worker, at(8), at(12))
    await world.session(worker, at(13))  # still active
    stub = sessions_reporting_pb2_grpc.SessionsReportingServiceStub(channel)
    whole_day = window(org, worker.id, at(0), at(24))
    late_morning = window(org, worker.id, at(10), at(14))
    windows = [
        whole_day,
        late_morning,
        window(org, idle_colleague.id, at(0), at(24)),  # no sessions: no total
        window(await world.organization(), worker.id, at(0), at(24)),  # the user id in another tenant
    ]
    # At 15:30: 60 + 240 + 150 minutes in the day; 120 + 60 in 10:00..14:00.
    assert await work_totals(stub, service, windows, at(15, 30)) == {
        (org, worker.id, at(0)): (450 * 60, 3),
        (org, worker.id, at(10)): (180 * 60, 2),
    }
    # At 11:00 the second session has run 3 hours and the third has not begun.
    assert await work_totals(stub, service, windows, at(11)) == {
        (org, worker.id, at(0)): (240 * 60, 2),
        (org, worker.id, at(10)): (60 * 60, 1),
    }

    too_many = spb.StreamWorkTotalsRequest(windows=[whole_day] * 20001)
    names_field(await invalid_argument(stub.StreamWorkTotals(too_many, metadata=service)), "windows")


async def test_idle_sessions_follow_each_organizations_threshold(
    world: World, channel: grpc.aio.Channel, service: Metadata
) -> None:
    as_of = at(16)
    relaxed = await world.organization()
    strict = await world.organization()
    people = [await world.user(strict) for _ in range(5)] + [await world.user(relaxed)]

    def ago(minutes: int) -> datetime:
        return as_of - timedelta(minutes=minutes)

    six = await world.session(people[0], ago(60), last_activity_at=ago(1), idle_since=ago(6))  # idle events since
    silent = await world.session(people[1], ago(10))  # no activity: idle since its start, nothing received
    await world.session(people[2], ago(60), last_activity_at=ago(2))  # recently active
    await world.session(people[3], ago(120), ago(30), last_activity_at=ago(90))  # stopped
    await world.session(people[4], as_of + timedelta(minutes=5))  # starts after as_of
    patient = await world.session(people[5], ago(60), last_activity_at=ago(8))  # under its org's 10
    stub = sessions_reporting_pb2_grpc.SessionsReportingServiceStub(channel)
    request = spb.StreamIdleSessionsRequest(
        as_of=stamp(as_of),
        default_idle_minutes=5,
        thresholds=[spb.IdleThreshold(organization_id=relaxed, idle_minutes=10)],
        batch_size=2,
    )
    found = set()
    ours = {p.id for p in people}
    async for reply in stub.StreamIdleSessions(request, metadata=service):
        assert len(reply.session_ids) <= 2
        columns = (reply.organization_ids, reply.user_ids, reply.session_ids, reply.idle_seconds)
        rows = zip(*columns, reply.silent_seconds, strict=True)
        found |= {row for row in rows if row[1] in ours}
    # Eight idle minutes are over the default five but under the relaxed organization's ten.
    # Idle counts from the last active input, silence from the last receipt of anything.
    assert found == {(strict, people[0].id, six.id, 360, 60), (strict, people[1].id, silent.id, 600, 600)}
    assert patient.id not in {row[2] for row in found}

    zero = spb.StreamIdleSessionsRequest(as_of=stamp(as_of), default_idle_minutes=0)
    names_field(await invalid_argument(stub.StreamIdleSessions(zero, metadata=service)), "default_idle_minutes")


def expected_activity(events: list[Event], start: datetime, end: datetime, top: int) -> tuple[int, int, list[Any]]:
    inside = [e for e in events if start <= e.at < end]
    apps: dict[str, int] = defaultdict(int)
    for e in inside:
        if e.kind == "active" and e.app:
            apps[e.app] += e.seconds
    ranked = sorted(apps.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return (
        sum(e.seconds for e in inside if e.kind == "active"),
        sum(e.seconds for e in inside if e.kind == "idle"),
        [list(kv) for kv in ranked],
    )


async def activity_totals(
    stub: ingest_reporting_pb2_grpc.IngestReportingServiceAsyncStub,
    metadata: Metadata,
    windows: list[ipb.UserWindow],
    top: int,
) -> dict[tuple[str, str, datetime], tuple[int, int, list[Any]]]:
    request = ipb.StreamActivityTotalsRequest(windows=windows, top_apps=top, batch_size=1)
    found = {}
    async for reply in stub.StreamActivityTotals(request, metadata=metadata):
        assert len(reply.totals) <= 1
        for t in reply.totals:
            apps = [[a.app_name, a.active_seconds] for a in t.top_apps]
            key = (t.organization_id, t.user_id, t.window_start.ToDatetime(tzinfo=UTC))
            found[key] = (t.active_seconds, t.idle_seconds, apps)
    return found


async def test_activity_totals_per_window_with_top_apps(
    world: World, channel: grpc.aio.Channel, service: Metadata
) -> None:
    org = await world.organization()
    worker, quiet = await world.user(org), await world.user(org)
    session = await world.session(worker, at(-2), at(20))
    events = [
        Event(at(-1), "active", 500, "Chrome"),  # the day before
        Event(at(0), "active", 120, "VS Code"),  # the first instant of the day
        Event(at(9), "active", 300, "Chrome"),
        Event(at(9, 30), "idle", 200, None),
        Event(at(10), "active", 90, "Slack"),
        Event(at(11), "active", 90, "Figma"),  # ties with Slack: by name
        Event(at(11, 30), "active", 45, "Terminal"),
        Event(at(12), "active", 80, "VS Code"),  # the first instant after 09:00..12:00
        Event(at(12), "idle", 30, None),
        Event(at(23, 59), "active", 60, "Zoom"),
    ]
    await world.events(session, events)
    stub = ingest_reporting_pb2_grpc.IngestReportingServiceStub(channel)
    elsewhere = await world.organization()

    def w(user: str, start: datetime, end: datetime, tenant: str = org) -> ipb.UserWindow:
        return ipb.UserWindow(organization_id=tenant, user_id=user, start=stamp(start), end=stamp(end))

    spans = [(at(0), at(24)), (at(9), at(12))]
    # The worker's id under another tenant, and a colleague without events: no totals.
    nobody = [w(worker.id, *spans[0], tenant=elsewhere), w(quiet.id, *spans[0])]
    # Windows of different spans, then one span for every window (a scheduled run's shape).
    for worker_spans in (spans, spans[:1]):
        windows = [w(worker.id, *span) for span in worker_spans] + nobody
        for top in (3, 10):
            want = {(org, worker.id, start): expected_activity(events, start, end, top) for start, end in worker_spans}
            assert await activity_totals(stub, service, windows, top) == want
    # Spot-check the figures by hand: the morning window holds 525 active and 200 idle seconds.
    assert expected_activity(events, *spans[1], 3) == (525, 200, [["Chrome", 300], ["Figma", 90], ["Slack", 90]])

    assert [r async for r in stub.StreamActivityTotals(ipb.StreamActivityTotalsRequest(), metadata=service)] == []
    too_many = ipb.StreamActivityTotalsRequest(windows=[w(worker.id, *spans[0])] * 20001)
    names_field(await invalid_argument(stub.StreamActivityTotals(too_many, metadata=service)), "windows")


async def test_activity_totals_reach_every_window_whatever_their_order(
    world: World, channel: grpc.aio.Channel, service: Metadata
) -> None:
    """A call reads only the (organization, user) range its windows span: windows sent in
    no particular order must all still be found."""
    events = [Event(at(9), "active", 300, "Chrome"), Event(at(10), "idle", 60, None)]
    workers = []
    for _ in range(2):
        org = await world.organization()
        for _ in range(3):
            worker = await world.user(org)
            await world.events(await world.session(worker, at(8), at(18)), events)
            workers.append((org, worker.id))
    stub = ingest_reporting_pb2_grpc.IngestReportingServiceStub(channel)
    ordered = sorted(workers)
    shuffled = [ordered[2], ordered[5], ordered[0], ordered[4], ordered[1], ordered[3]]  # neither end first
    windows = [ipb.UserWindow(organization_id=o, user_id=u, start=stamp(at(0)), end=stamp(at(24))) for o, u in shuffled]
    want = {(o, u, at(0)): expected_activity(events, at(0), at(24), 5) for o, u in workers}
    assert await activity_totals(stub, service, windows, 5) == want


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (ipb.EnsurePartitionsRequest(days_ahead=367), "days_ahead"),
        (ipb.EnsurePartitionsRequest(days_ahead=-1), "days_ahead"),
        (ipb.EnsurePartitionsRequest(days_ahead=1, retention_days=-1), "retention_days"),
    ],
    ids=["a year and a day ahead", "negative days ahead", "negative retention"],
)
async def test_ensure_partitions_refuses_bad_ranges(
    channel: grpc.aio.Channel, service: Metadata, request_: ipb.EnsurePartitionsRequest, field: str
) -> None:
    stub = ingest_reporting_pb2_grpc.IngestReportingServiceStub(channel)
    names_field(await invalid_argument(stub.EnsurePartitions(request_, metadata=service)), field)
