"""ApplyActivity: appends commute under contention, each idempotency key counts once, and
every change publishes its event (through the outbox, only once committed)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from tests.sessions.conftest import Server, UserFactory, apply_request, invalid_argument, start_session
from tests.support import eventually
from workpulse.redisconn import Keys, events_stream
from workpulse.sessions.v1 import sessions_pb2 as pb

Metadata = tuple[tuple[str, str], ...]
# The session object of every session event: the REST API's session JSON (API.md).
SESSION_OBJECT_KEYS = {
    "id",
    "user_id",
    "organization_id",
    "project_id",
    "start_time",
    "end_time",
    "status",
    "total_active_seconds",
    "total_idle_seconds",
    "last_activity_at",
    "version",
}


def _stamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def test_hundred_concurrent_appends_all_succeed_with_exact_totals(
    sessions_server: Server, make_user: UserFactory, service_md: Metadata
) -> None:
    user = make_user()
    session = await start_session(sessions_server, user)
    replies = await asyncio.gather(
        *(
            sessions_server.stub.ApplyActivity(
                apply_request(user, session.id, f"k-{i}", active=60 if i % 4 else 0, idle=0 if i % 4 else 30),
                metadata=service_md,
            )
            for i in range(100)
        )
    )
    assert not any(r.duplicate for r in replies)
    # Each reply shows its own append applied: versions are distinct and contiguous.
    assert sorted(r.session.version for r in replies) == list(range(2, 102))
    final = (
        await sessions_server.stub.GetSession(pb.GetSessionRequest(session_id=session.id), metadata=user.md)
    ).session
    assert final.total_active_seconds == 75 * 60
    assert final.total_idle_seconds == 25 * 30
    assert final.version == 101


async def test_same_key_counts_once_even_when_raced(
    sessions_server: Server, make_user: UserFactory, service_md: Metadata
) -> None:
    user = make_user()
    session = await start_session(sessions_server, user)
    request = apply_request(user, session.id, "batch-1", active=120, idle=5)
    replies = await asyncio.gather(
        *(sessions_server.stub.ApplyActivity(request, metadata=service_md) for _ in range(10))
    )
    assert sorted(r.duplicate for r in replies) == [False] + [True] * 9
    again = await sessions_server.stub.ApplyActivity(request, metadata=service_md)
    assert again.duplicate and again.session.total_active_seconds == 120 and again.session.total_idle_seconds == 5
    assert again.session.version == 2


async def test_activity_before_a_stop_still_counts_after_it(
    sessions_server: Server, make_user: UserFactory, service_md: Metadata
) -> None:
    user = make_user()
    session = await start_session(sessions_server, user)
    await sessions_server.stub.StopSession(pb.StopSessionRequest(session_id=session.id), metadata=user.md)
    stamp = datetime.now(UTC) - timedelta(minutes=1)
    reply = await sessions_server.stub.ApplyActivity(
        apply_request(user, session.id, "late", active=45, last_activity_at=_stamp(stamp)), metadata=service_md
    )
    assert reply.session.status == "stopped" and reply.session.total_active_seconds == 45
    assert reply.session.last_activity_at.ToDatetime(tzinfo=UTC) == stamp
    # An older stamp never moves last_activity_at backwards.
    older = await sessions_server.stub.ApplyActivity(
        apply_request(user, session.id, "older", last_activity_at=_stamp(stamp - timedelta(hours=1))),
        metadata=service_md,
    )
    assert older.session.last_activity_at == reply.session.last_activity_at


async def test_apply_activity_is_for_services_and_tenants_only(
    sessions_server: Server, make_user: UserFactory, service_md: Metadata
) -> None:
    user = make_user()
    session = await start_session(sessions_server, user)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await sessions_server.stub.ApplyActivity(apply_request(user, session.id, "x"), metadata=user.md)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

    stranger = make_user()
    with pytest.raises(grpc.aio.AioRpcError) as other_tenant:
        await sessions_server.stub.ApplyActivity(apply_request(stranger, session.id, "x"), metadata=service_md)
    assert other_tenant.value.code() == grpc.StatusCode.NOT_FOUND

    bad = [
        (apply_request(user, session.id, ""), "idempotency_key"),
        (apply_request(user, session.id, "neg", active=-1), "active_seconds"),
        (apply_request(user, session.id, "huge", idle=10**9), "idle_seconds"),
        (apply_request(user, "not-a-uuid", "k"), "session_id"),
        (pb.ApplyActivityRequest(organization_id="x", session_id=session.id, idempotency_key="k"), "organization_id"),
    ]
    for request, field in bad:
        await invalid_argument(sessions_server.stub.ApplyActivity(request, metadata=service_md), field)
    # A failed apply leaves its key unclaimed: the retry counts.
    missing = apply_request(user, str(uuid.uuid4()), "retry-me")
    with pytest.raises(grpc.aio.AioRpcError):
        await sessions_server.stub.ApplyActivity(missing, metadata=service_md)
    applied = await sessions_server.stub.ApplyActivity(apply_request(user, session.id, "retry-me"), metadata=service_md)
    assert not applied.duplicate and applied.session.total_active_seconds == 60


async def test_state_changes_publish_session_events(
    sessions_server: Server,
    make_user: UserFactory,
    service_md: Metadata,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    user = make_user()
    session = await start_session(sessions_server, user)
    worked = datetime.now(UTC).replace(microsecond=123456)
    for _ in range(2):  # the repeat counts (and publishes) nothing
        await sessions_server.stub.ApplyActivity(
            apply_request(user, session.id, "e1", active=30, idle=10, last_activity_at=_stamp(worked)),
            metadata=service_md,
        )
    await sessions_server.stub.StopSession(pb.StopSessionRequest(session_id=session.id), metadata=user.md)
    stream = events_stream(Keys(redis_prefix))

    async def mine() -> list[tuple[str, dict[str, object]]]:
        found: list[tuple[str, dict[str, object]]] = []
        entries: list[tuple[str, dict[str, str]]] = await redis_client.xrange(stream)  # type: ignore[assignment]
        for _, fields in entries:
            data = json.loads(fields["data"])
            if data.get("sessionId") == session.id:
                assert fields["org"] == user.org and fields["service"] == "sessions"
                found.append((fields["type"], data))
        return found if len(found) >= 4 else []

    events = await eventually(mine, what="four session events")
    # The stop is announced twice, in one transaction: SESSION_UPDATE (the original's
    # clients see stops only so) and SESSION_STOPPED.
    assert [t for t, _ in events] == ["SESSION_STARTED", "SESSION_UPDATE", "SESSION_UPDATE", "SESSION_STOPPED"]
    update = events[1][1]
    assert {k: update[k] for k in ("userId", "total_active_seconds", "total_idle_seconds", "status", "version")} == {
        "userId": user.id,
        "total_active_seconds": 30,
        "total_idle_seconds": 10,
        "status": "active",
        "version": 2,
    }
    assert events[2][1] == events[3][1]
    assert events[2][1]["status"] == "stopped" and events[2][1]["version"] == 3
    # The activity's SESSION_UPDATE is built in SQL, the others in Python: same keys, same
    # formats, the session object included.
    started, stopped = events[0][1], events[2][1]
    assert set(update) == set(started) == set(stopped)
    assert update["startTime"] == started["startTime"] == stopped["startTime"]
    assert update["organizationId"] == user.org and update["projectId"] is None and update["endTime"] is None
    assert isinstance(stopped["endTime"], str) and stopped["endTime"].endswith("Z")
    objects = [data["session"] for _, data in events]
    assert all(isinstance(o, dict) and set(o) == SESSION_OBJECT_KEYS for o in objects), objects
    sql, python = objects[1], objects[2]
    assert isinstance(sql, dict) and isinstance(python, dict)
    assert sql == {
        "id": session.id,
        "user_id": user.id,
        "organization_id": user.org,
        "project_id": None,
        "start_time": started["startTime"],
        "end_time": None,
        "status": "active",
        "total_active_seconds": 30,
        "total_idle_seconds": 10,
        "last_activity_at": worked.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "version": 2,
    }
    assert python["start_time"] == sql["start_time"] and python["end_time"] == stopped["endTime"]
    assert sql["last_activity_at"] == worked.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert python["last_activity_at"] == sql["last_activity_at"]  # a stop leaves it as it was
    assert {k: python[k] for k in ("status", "version", "total_active_seconds")} == {
        "status": "stopped",
        "version": 3,
        "total_active_seconds": 30,
    }
