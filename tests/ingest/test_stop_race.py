"""Stop racing activity: events stamped before the stop count (even when they arrive after
it), every event stamped after the stop is rejected (no allowance: the stop is final the
moment it commits, on every ingest server, here a second one beside the stack's), no
stored event lies after the end, and the totals invariant holds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.batch_store import ActivityStore
from services.ingest.domain import NewEvent
from services.ingest.repository import ActivityLogRepository
from tests.ingest.conftest import Stack, UserFactory, event, invariant_violations, start_ingest
from workpulse.db import UnitOfWork, create_engine
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc

SKEW = 0.5


async def test_events_stamped_before_the_stop_count_and_later_ones_are_rejected(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    running, stop_server = await start_ingest(stack.sessions_address, ingest_clock_skew_seconds=SKEW)
    user = make_user()
    session = await stack.start(user)
    outcomes: list[tuple[datetime, bool]] = []  # (stamp, accepted)
    stopped_at: list[datetime] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            ingest = ingest_pb2_grpc.IngestServiceStub(channel)

            async def send(stamp: datetime, n: int) -> None:
                request = pb.RecordActivityRequest(session_id=session.id, event=event(1, at=stamp, client_id=f"e{n}"))
                try:
                    reply = await ingest.RecordActivity(request, metadata=user.md)
                    outcomes.append((stamp, reply.status == pb.EVENT_STATUS_ACCEPTED))
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
                    outcomes.append((stamp, False))

            async def agent() -> None:
                n = 0
                sends: list[asyncio.Task[None]] = []
                deadline = None
                while deadline is None or datetime.now(UTC) < deadline:
                    sends.append(asyncio.create_task(send(datetime.now(UTC), n)))
                    n += 1
                    await asyncio.sleep(0.005)
                    if stopped_at and deadline is None:
                        deadline = stopped_at[0] + timedelta(seconds=SKEW + 1.5)
                await asyncio.gather(*sends)

            async def stopper() -> None:
                await asyncio.sleep(0.3)
                stopped = await stack.stop(user, session.id)
                stopped_at.append(stopped.end_time.ToDatetime(tzinfo=UTC))

            await asyncio.gather(agent(), stopper())
            end = stopped_at[0]
            # Recorded offline before the stop, uploaded after it.
            await send(end - timedelta(milliseconds=50), 10_000)
    finally:
        await stop_server()

    before = [ok for stamp, ok in outcomes if stamp <= end]
    after = [ok for stamp, ok in outcomes if stamp > end]
    assert before and all(before), "an event stamped before the stop was refused"
    assert after and not any(after), "an event stamped after the stop was counted"
    async with owner_engine.connect() as conn:
        latest = (
            await conn.execute(
                text('select max("timestamp") from ingest.activity_logs where session_id = :id'), {"id": session.id}
            )
        ).scalar_one()
    assert latest <= end
    assert await invariant_violations(owner_engine, [session.id]) == []


async def test_a_stop_ends_no_earlier_than_the_latest_stored_event(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    """An agent's clock may run a little ahead (within the allowance): its last event is
    stamped after the moment of the stop. The stop then ends at that event, so nothing
    stored lies after the end and last_activity_at <= end_time."""
    user = make_user()
    session = await stack.start(user)
    ahead = datetime.now(UTC) + timedelta(seconds=3)  # the allowance is 5 s
    request = pb.RecordActivityRequest(session_id=session.id, event=event(30, at=ahead, client_id="ahead"))
    recorded = await stack.ingest.RecordActivity(request, metadata=user.md)
    assert recorded.status == pb.EVENT_STATUS_ACCEPTED
    stopped = await stack.stop(user, session.id)
    end = stopped.end_time.ToDatetime(tzinfo=UTC)
    assert ahead <= end < ahead + timedelta(seconds=1)
    assert stopped.last_activity_at.ToDatetime(tzinfo=UTC) <= end
    later = pb.RecordActivityRequest(
        session_id=session.id, event=event(30, at=end + timedelta(milliseconds=1), client_id="later")
    )
    try:
        await stack.ingest.RecordActivity(later, metadata=user.md)
        raise AssertionError("an event stamped after the end was accepted")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "after the session ended" in (exc.details() or "")
    assert await invariant_violations(owner_engine, [session.id]) == []


async def test_an_event_far_ahead_of_a_stopped_session_is_after_its_end_not_in_the_future(
    stack: Stack, make_user: UserFactory
) -> None:
    """Ingest's copy of the session was read while it was active (the first batch caches
    it); after the stop, an event stamped beyond the allowance is refused for the reason
    that matters: the session is over."""
    user = make_user()
    session = await stack.start(user)
    first = pb.RecordActivityBatchRequest(session_id=session.id, events=[event(5, at=datetime.now(UTC))])
    assert (await stack.ingest.RecordActivityBatch(first, metadata=user.md)).accepted == 1
    await stack.stop(user, session.id)
    far = pb.RecordActivityBatchRequest(
        session_id=session.id, events=[event(5, at=datetime.now(UTC) + timedelta(seconds=30))]
    )
    reply = await stack.ingest.RecordActivityBatch(far, metadata=user.md)
    assert [r.reason for r in reply.results] == [pb.REJECT_REASON_AFTER_SESSION_END], reply


async def test_a_stop_waits_for_a_write_deciding_and_ends_after_what_it_stores(
    stack: Stack, make_user: UserFactory, database_url: str
) -> None:
    """A write holds its session's lock from before it reads the end until it commits: a
    stop arriving meanwhile waits for it, then ends no earlier than the event it stored
    (stamped a second ahead, as an agent's clock may run)."""
    user = make_user()
    session = await stack.start(user)
    engine = create_engine(database_url, pool_size=2)
    uow = UnitOfWork(engine)
    ahead = datetime.now(UTC) + timedelta(seconds=1)
    try:
        async with uow.direct(None) as conn:
            log = ActivityLogRepository(conn)
            await log.enter(user.org, [session.id])
            assert await log.ends(user.org, [session.id]) == {}
            start = session.start_time.ToDatetime(tzinfo=UTC)
            stored = await log.insert_new(
                user.org,
                [(session.id, user.id, NewEvent("ahead", ahead, "active", 1, None, None, None))],
                {session.id: start},
            )
            assert len(stored) == 1
            closing = asyncio.create_task(ActivityStore(uow).close(user.org, session.id))
            await asyncio.sleep(0.5)
            assert not closing.done(), "the stop did not wait for the write holding the session's lock"
        end = await asyncio.wait_for(closing, timeout=10)
        assert end >= ahead
    finally:
        await engine.dispose()
