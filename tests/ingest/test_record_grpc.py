"""RecordActivity and RecordActivityBatch through a real server: totals, duplicates, rejections."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.ingest.conftest import Stack, User, UserFactory, event, invariant_violations
from workpulse.ingest.v1 import ingest_pb2 as pb


async def test_hundred_concurrent_single_events_all_count(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    replies = await asyncio.gather(
        *(
            stack.ingest.RecordActivity(
                pb.RecordActivityRequest(session_id=session.id, event=event(60)), metadata=user.md
            )
            for _ in range(100)
        )
    )
    assert all(r.status == pb.EVENT_STATUS_ACCEPTED for r in replies)
    assert max(r.session.total_active_seconds for r in replies) == 6000
    assert await invariant_violations(owner_engine, [session.id]) == []


async def _batch(
    stack: Stack, user: User, session_id: str, events: list[pb.ActivityEvent]
) -> pb.RecordActivityBatchResponse:
    request = pb.RecordActivityBatchRequest(session_id=session_id, events=events)
    reply: pb.RecordActivityBatchResponse = await stack.ingest.RecordActivityBatch(request, metadata=user.md)
    return reply


async def test_a_resent_batch_counts_once_with_or_without_client_ids(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    now = datetime.now(UTC)
    events = [
        event(60, at=now - timedelta(seconds=3), client_id="a"),
        event(30, kind=pb.ACTIVITY_TYPE_IDLE, at=now - timedelta(seconds=2)),  # id derived from content
        event(45, at=now - timedelta(seconds=1), app="editor"),
    ]
    first, again = await _batch(stack, user, session.id, events), await _batch(stack, user, session.id, events)
    assert (first.accepted, first.duplicate, first.rejected) == (3, 0, 0)
    assert (again.accepted, again.duplicate, again.rejected) == (0, 3, 0)
    assert [r.status for r in again.results] == [pb.EVENT_STATUS_DUPLICATE] * 3
    assert (again.session.total_active_seconds, again.session.total_idle_seconds) == (105, 30)
    assert await invariant_violations(owner_engine, [session.id]) == []


async def test_a_single_event_with_a_client_id_and_no_timestamp_is_recognised_when_resent(
    stack: Stack, make_user: UserFactory
) -> None:
    user = make_user()
    session = await stack.start(user)
    request = pb.RecordActivityRequest(session_id=session.id, event=event(60, client_id="retry-me"))
    first = await stack.ingest.RecordActivity(request, metadata=user.md)
    second = await stack.ingest.RecordActivity(request, metadata=user.md)
    assert (first.status, second.status) == (pb.EVENT_STATUS_ACCEPTED, pb.EVENT_STATUS_DUPLICATE)
    assert second.session.total_active_seconds == 60


async def test_an_event_stamped_before_its_session_start_is_found_by_a_resend_without_timestamp(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    """An agent's clock may run behind: its event lands before the session's start (within
    the skew); the same event resent without a timestamp is still that event."""
    user = make_user()
    session = await stack.start(user)
    early = session.start_time.ToDatetime(tzinfo=UTC) - timedelta(seconds=3)  # the allowance is 5 s
    stamped = pb.RecordActivityRequest(session_id=session.id, event=event(60, at=early, client_id="early"))
    unstamped = pb.RecordActivityRequest(session_id=session.id, event=event(60, client_id="early"))
    first = await stack.ingest.RecordActivity(stamped, metadata=user.md)
    again = await stack.ingest.RecordActivity(unstamped, metadata=user.md)
    assert (first.status, again.status) == (pb.EVENT_STATUS_ACCEPTED, pb.EVENT_STATUS_DUPLICATE)
    assert again.session.total_active_seconds == 60
    assert await invariant_violations(owner_engine, [session.id]) == []


async def test_bad_events_are_rejected_one_by_one_and_the_rest_counts(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    now = datetime.now(UTC)
    reply = await _batch(
        stack,
        user,
        session.id,
        [
            event(60, at=now),
            event(-5, at=now),
            event(86_401, at=now),
            event(10, kind=7, at=now),  # type: ignore[arg-type]
            event(10),
            event(10, at=now + timedelta(minutes=10)),
            event(10, at=now - timedelta(hours=1)),
            event(10, at=now, client_id="x" * 129),
        ],
    )
    assert (reply.accepted, reply.rejected) == (1, 7)
    assert [(r.index, r.reason) for r in reply.results] == [
        (1, pb.REJECT_REASON_INVALID_DURATION),
        (2, pb.REJECT_REASON_INVALID_DURATION),
        (3, pb.REJECT_REASON_UNKNOWN_ACTIVITY_TYPE),
        (4, pb.REJECT_REASON_MISSING_TIMESTAMP),
        (5, pb.REJECT_REASON_TIMESTAMP_IN_FUTURE),
        (6, pb.REJECT_REASON_BEFORE_SESSION_START),
        (7, pb.REJECT_REASON_FIELD_TOO_LONG),
    ]
    assert all(r.message for r in reply.results)
    assert reply.session.total_active_seconds == 60
    assert await invariant_violations(owner_engine, [session.id]) == []


async def test_a_rejected_single_event_fails_the_call_naming_the_field(stack: Stack, make_user: UserFactory) -> None:
    user = make_user()
    session = await stack.start(user)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stack.ingest.RecordActivity(
            pb.RecordActivityRequest(session_id=session.id, event=event(90_000)), metadata=user.md
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(bad.value.trailing_metadata() or ())["wp-field"] == "duration_seconds"
    assert (bad.value.details() or "").startswith("duration_seconds"), bad.value.details()


async def test_oversized_batches_fail_whole_and_store_nothing(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    now = datetime.now(UTC)
    with pytest.raises(grpc.aio.AioRpcError) as big:
        await _batch(stack, user, session.id, [event(1, at=now, client_id=str(n)) for n in range(1001)])
    assert big.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (big.value.details() or "").startswith("events: at most 1000"), big.value.details()
    assert dict(big.value.trailing_metadata() or ())["wp-field"] == "events"
    reply = await _batch(stack, user, session.id, [event(1, at=now, client_id=str(n)) for n in range(1000)])
    assert reply.accepted == 1000
    assert reply.session.total_active_seconds == 1000


async def test_only_the_owner_records_others_see_not_found(stack: Stack, make_user: UserFactory) -> None:
    owner = make_user()
    session = await stack.start(owner)
    colleague = make_user(org=owner.org)
    manager = make_user(role="manager", org=owner.org)
    stranger = make_user(role="admin")
    request = pb.RecordActivityRequest(session_id=session.id, event=event(60))
    for caller in (colleague, manager, stranger):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stack.ingest.RecordActivity(request, metadata=caller.md)
        assert denied.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await stack.ingest.RecordActivity(
            pb.RecordActivityRequest(session_id="nope", event=event(60)), metadata=owner.md
        )
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (malformed.value.details() or "").startswith("session_id"), malformed.value.details()
    assert dict(malformed.value.trailing_metadata() or ())["wp-field"] == "session_id"
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stack.ingest.RecordActivity(request)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_stopped_session_takes_offline_events_but_not_new_ones(stack: Stack, make_user: UserFactory) -> None:
    user = make_user()
    session = await stack.start(user)
    await asyncio.sleep(0.05)
    stopped = await stack.stop(user, session.id)
    end = stopped.end_time.ToDatetime(tzinfo=UTC)
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await stack.ingest.RecordActivity(
            pb.RecordActivityRequest(session_id=session.id, event=event(60)), metadata=user.md
        )
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    offline = await stack.ingest.RecordActivity(
        pb.RecordActivityRequest(session_id=session.id, event=event(60, at=end - timedelta(milliseconds=10))),
        metadata=user.md,
    )
    assert offline.status == pb.EVENT_STATUS_ACCEPTED
    assert offline.session.total_active_seconds == 60
