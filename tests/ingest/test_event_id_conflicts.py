"""One client event id names one event: an id already stored in the session with another
timestamp is refused as a conflict with a clear reason, never counted twice; the exact
same event again is a duplicate. Through the real gRPC ingest (and the REST route)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.ingest.conftest import Stack, User, UserFactory, event, invariant_violations, start_ingest
from tests.support import AsgiClient
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc
from workpulse.settings import load

CONFLICT_MESSAGE = "client_event_id: already stored in this session with another timestamp"


async def _batch(
    ingest: ingest_pb2_grpc.IngestServiceAsyncStub, user: User, session_id: str, events: list[pb.ActivityEvent]
) -> pb.RecordActivityBatchResponse:
    request = pb.RecordActivityBatchRequest(session_id=session_id, events=events)
    reply: pb.RecordActivityBatchResponse = await ingest.RecordActivityBatch(request, metadata=user.md)
    return reply


async def _stored(engine: AsyncEngine, session_id: str, client_event_id: str) -> list[datetime]:
    """The timestamps stored for one client event id of a session."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                'select "timestamp" from ingest.activity_logs '
                "where session_id = cast(:sid as uuid) and client_event_id = :cid order by 1"
            ),
            {"sid": session_id, "cid": client_event_id},
        )
        return [row[0] for row in found]


def _conflict(result: pb.EventResult, index: int, client_event_id: str) -> None:
    assert (result.index, result.status, result.reason) == (
        index,
        pb.EVENT_STATUS_REJECTED,
        pb.REJECT_REASON_EVENT_ID_CONFLICT,
    ), result
    assert result.client_event_id == client_event_id
    assert result.message.startswith("client_event_id"), result.message
    assert result.message == CONFLICT_MESSAGE


async def test_an_id_stored_with_another_timestamp_is_a_conflict_and_the_same_event_a_duplicate(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    t = datetime.now(UTC)
    first = await _batch(stack.ingest, user, session.id, [event(60, at=t, client_id="x")])
    assert (first.accepted, first.duplicate, first.rejected) == (1, 0, 0)

    later = await _batch(
        stack.ingest,
        user,
        session.id,
        [
            event(10, at=t + timedelta(seconds=1), client_id="other-1"),
            event(60, at=t + timedelta(seconds=1), client_id="x"),
            event(20, kind=pb.ACTIVITY_TYPE_IDLE, at=t + timedelta(seconds=2), client_id="other-2"),
        ],
    )
    assert (later.accepted, later.duplicate, later.rejected) == (2, 0, 1)
    assert len(later.results) == 1
    _conflict(later.results[0], 1, "x")
    assert (later.session.total_active_seconds, later.session.total_idle_seconds) == (70, 20)

    again = await _batch(stack.ingest, user, session.id, [event(60, at=t, client_id="x")])
    assert (again.accepted, again.duplicate, again.rejected) == (0, 1, 0)
    assert [(r.index, r.status, r.client_event_id) for r in again.results] == [(0, pb.EVENT_STATUS_DUPLICATE, "x")]
    assert (again.session.total_active_seconds, again.session.total_idle_seconds) == (70, 20)

    # Resending the conflicting event is refused the same way each time.
    still = await _batch(stack.ingest, user, session.id, [event(60, at=t + timedelta(seconds=1), client_id="x")])
    assert (still.accepted, still.duplicate, still.rejected) == (0, 0, 1)
    _conflict(still.results[0], 0, "x")
    assert still.session.total_active_seconds == 70

    assert await _stored(owner_engine, session.id, "x") == [t]
    assert await invariant_violations(owner_engine, [session.id]) == []


async def test_one_id_twice_in_a_batch_with_two_timestamps_keeps_the_first(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    t = datetime.now(UTC)
    reply = await _batch(
        stack.ingest,
        user,
        session.id,
        [
            event(30, at=t, client_id="y"),
            event(45, at=t + timedelta(seconds=1), client_id="y"),
            event(30, at=t, client_id="y"),  # the first, repeated: a duplicate
            event(5, at=t, client_id="z"),
        ],
    )
    assert (reply.accepted, reply.duplicate, reply.rejected) == (2, 1, 1)
    assert [(r.index, r.status) for r in reply.results] == [
        (1, pb.EVENT_STATUS_REJECTED),
        (2, pb.EVENT_STATUS_DUPLICATE),
    ]
    _conflict(reply.results[0], 1, "y")
    assert reply.session.total_active_seconds == 35
    assert await _stored(owner_engine, session.id, "y") == [t]
    assert await invariant_violations(owner_engine, [session.id]) == []


async def test_a_single_event_whose_id_is_stored_with_another_timestamp_fails_already_exists(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    t = datetime.now(UTC)
    first = await stack.ingest.RecordActivity(
        pb.RecordActivityRequest(session_id=session.id, event=event(60, at=t, client_id="z")), metadata=user.md
    )
    assert first.status == pb.EVENT_STATUS_ACCEPTED and first.client_event_id == "z"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.ingest.RecordActivity(
            pb.RecordActivityRequest(
                session_id=session.id, event=event(60, at=t + timedelta(seconds=2), client_id="z")
            ),
            metadata=user.md,
        )
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS, refused.value.details()
    assert (refused.value.details() or "").startswith("client_event_id"), refused.value.details()
    assert dict(refused.value.trailing_metadata() or ())["wp-field"] == "client_event_id"

    same = await stack.ingest.RecordActivity(
        pb.RecordActivityRequest(session_id=session.id, event=event(60, at=t, client_id="z")), metadata=user.md
    )
    assert same.status == pb.EVENT_STATUS_DUPLICATE
    # Without a timestamp the id alone names the stored event: a duplicate, not a conflict.
    unstamped = await stack.ingest.RecordActivity(
        pb.RecordActivityRequest(session_id=session.id, event=event(60, client_id="z")), metadata=user.md
    )
    assert unstamped.status == pb.EVENT_STATUS_DUPLICATE
    assert unstamped.session.total_active_seconds == 60
    assert await _stored(owner_engine, session.id, "z") == [t]
    assert await invariant_violations(owner_engine, [session.id]) == []


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app in this process (httpx over ASGI) in front of the stack's servers."""
    settings = load(GatewaySettings, sessions_addr=stack.sessions_address, ingest_addr=stack.ingest_address)
    async with AsgiClient(create_app(settings)) as client:
        yield client


async def test_the_rest_route_answers_a_conflict_with_409_naming_the_field(
    stack: Stack, gateway: httpx.AsyncClient, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    t = datetime.now(UTC)
    headers = {"authorization": f"Bearer {user.token}"}
    body = {"activityType": "active", "durationSeconds": 60, "clientEventId": "rest-z", "timestamp": t.isoformat()}
    first = await gateway.post(f"/sessions/{session.id}/activity", json=body, headers=headers)
    assert first.status_code == 201, first.text
    moved = {**body, "timestamp": (t + timedelta(seconds=2)).isoformat()}
    conflict = await gateway.post(f"/sessions/{session.id}/activity", json=moved, headers=headers)
    assert conflict.status_code == 409, conflict.text
    error = conflict.json()
    assert error["statusCode"] == 409 and error["message"].startswith("client_event_id"), error
    again = await gateway.post(f"/sessions/{session.id}/activity", json=body, headers=headers)
    assert again.status_code == 201 and again.json()["duplicate"] is True, again.text
    assert again.json()["session"]["total_active_seconds"] == 60
    assert await _stored(owner_engine, session.id, "rest-z") == [t]
    assert await invariant_violations(owner_engine, [session.id]) == []


async def _race(
    ingest: ingest_pb2_grpc.IngestServiceAsyncStub, user: User, session_id: str, client_id: str, t: datetime
) -> tuple[pb.RecordActivityBatchResponse, pb.RecordActivityBatchResponse]:
    one, two = await asyncio.gather(
        _batch(ingest, user, session_id, [event(60, at=t, client_id=client_id)]),
        _batch(ingest, user, session_id, [event(60, at=t + timedelta(seconds=1), client_id=client_id)]),
    )
    return one, two


def _one_stored_one_conflict(
    replies: tuple[pb.RecordActivityBatchResponse, pb.RecordActivityBatchResponse], client_id: str
) -> None:
    assert sorted((r.accepted, r.duplicate, r.rejected) for r in replies) == [(0, 0, 1), (1, 0, 0)], replies
    loser = next(r for r in replies if r.rejected)
    _conflict(loser.results[0], 0, client_id)


async def test_two_racing_batches_with_one_id_at_two_timestamps_store_it_once(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    t = datetime.now(UTC)
    for n in range(5):
        replies = await _race(stack.ingest, user, session.id, f"w{n}", t)
        _one_stored_one_conflict(replies, f"w{n}")
        assert len(await _stored(owner_engine, session.id, f"w{n}")) == 1
    final = await _batch(stack.ingest, user, session.id, [event(0, at=t, client_id="probe")])
    assert final.session.total_active_seconds == 5 * 60
    assert await invariant_violations(owner_engine, [session.id]) == []


async def test_two_racing_batches_sharing_one_group_commit_store_the_id_once(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    """With one commit slot, writes queued behind a running commit share the next one: the
    two timestamps of one id must not both be stored by that one transaction."""
    running, stop_server = await start_ingest(stack.sessions_address, ingest_max_concurrent_writes=1)
    user = make_user()
    session = await stack.start(user)
    t = datetime.now(UTC)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            ingest = ingest_pb2_grpc.IngestServiceStub(channel)
            await _batch(ingest, user, session.id, [event(0, at=t, client_id="warm-up")])  # caches the window
            filler = asyncio.create_task(
                _batch(ingest, user, session.id, [event(0, at=t, client_id=f"f{n}") for n in range(1000)])
            )
            await asyncio.sleep(0.02)  # the filler holds the only slot; both racers queue behind it
            replies = await _race(ingest, user, session.id, "w", t)
            assert (await filler).accepted == 1000
    finally:
        await stop_server()
    stored = await _stored(owner_engine, session.id, "w")
    assert len(stored) == 1, f"one id stored at {len(stored)} timestamps: {stored}; replies {replies}"
    _one_stored_one_conflict(replies, "w")
    assert await invariant_violations(owner_engine, [session.id]) == []


async def test_events_with_derived_ids_resent_are_duplicates_never_conflicts(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    t = datetime.now(UTC)
    events = [
        event(60, at=t, app="editor"),
        event(30, kind=pb.ACTIVITY_TYPE_IDLE, at=t),
        event(15, at=t + timedelta(seconds=1), app="editor"),  # the same content later: another event
    ]
    first = await _batch(stack.ingest, user, session.id, events)
    assert (first.accepted, first.duplicate, first.rejected) == (3, 0, 0)
    again = await _batch(stack.ingest, user, session.id, events)
    assert (again.accepted, again.duplicate, again.rejected) == (0, 3, 0)
    assert all(r.status == pb.EVENT_STATUS_DUPLICATE for r in again.results)
    assert all(r.client_event_id.startswith("sha256:") for r in again.results)
    # The same content at another moment derives another id: a new event, no conflict.
    shifted = await _batch(stack.ingest, user, session.id, [event(60, at=t + timedelta(seconds=2), app="editor")])
    assert (shifted.accepted, shifted.duplicate, shifted.rejected) == (1, 0, 0)
    resent = await asyncio.gather(*(_batch(stack.ingest, user, session.id, events) for _ in range(3)))
    assert all((r.accepted, r.duplicate, r.rejected) == (0, 3, 0) for r in resent)
    # New derived events sent three times at once: stored once, the other copies duplicates.
    fresh = [event(5, at=t + timedelta(seconds=1), app=f"app-{n}") for n in range(4)]
    racing = await asyncio.gather(*(_batch(stack.ingest, user, session.id, fresh) for _ in range(3)))
    assert sum(r.accepted for r in racing) == 4 and sum(r.duplicate for r in racing) == 8
    assert not any(r.rejected for r in racing)
    latest = max(racing, key=lambda r: r.session.version).session
    assert (latest.total_active_seconds, latest.total_idle_seconds) == (155, 30)
    assert await invariant_violations(owner_engine, [session.id]) == []
