"""RealtimeService over real gRPC and real Redis: audiences, resume, expiry, presence RPCs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime
from unittest.mock import ANY

import grpc
import pytest
import redis.asyncio as aioredis

from tests.realtime.clients import GrpcListener, Recorder, publish
from tests.realtime.conftest import Org, RealtimeServer, auth, subscribe_request
from tests.support import TokenFactory, eventually
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc


async def _listen_all(channel: grpc.aio.Channel, orgs: list[Org]) -> dict[str, GrpcListener]:
    listeners = {u: GrpcListener(channel, org.tokens[u], subscribe_request()) for org in orgs for u in org.users}
    await asyncio.gather(*(lst.started() for lst in listeners.values()))
    return listeners


async def _barrier(
    redis: aioredis.Redis, realtime: RealtimeServer, orgs: list[Org], listeners: dict[str, GrpcListener]
) -> None:
    """Publishes one last event per user and waits until each got theirs: anything that was
    wrongly delivered before it has arrived by then (the stream keeps order)."""
    for org in orgs:
        for u in org.users:
            await publish(redis, realtime.stream, "BARRIER", org.id, {"userId": u})
    for org in orgs:
        for u in org.users:
            await listeners[u].recorder.wait(lambda r: bool(r.of_type("BARRIER")), what="barrier")


def _seen(recorder: Recorder) -> set[str]:
    return {e.data["mark"] for e in recorder.events if "mark" in e.data}


async def test_every_event_reaches_exactly_its_audience(
    channel: grpc.aio.Channel, realtime: RealtimeServer, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    orgs = [Org.create(tokens), Org.create(tokens)]
    listeners = await _listen_all(channel, orgs)
    expected: dict[str, set[str]] = {u: set() for org in orgs for u in org.users}
    for org in orgs:
        for subject in org.users:
            for kind in ("SESSION_UPDATE", "INACTIVE_ALERT", "OVERTIME_ALERT"):
                mark = f"{kind}:{subject}"
                await publish(redis, realtime.stream, kind, org.id, {"userId": subject, "mark": mark})
                expected[subject].add(mark)  # the user
                expected[org.manager].add(mark)  # and the organization's managers
        # An event of the organization about nobody in particular: managers only.
        await publish(redis, realtime.stream, "SESSION_UPDATE", org.id, {"mark": f"org:{org.id}"})
        expected[org.manager].add(f"org:{org.id}")
    await _barrier(redis, realtime, orgs, listeners)
    for user, listener in listeners.items():
        assert _seen(listener.recorder) == expected[user], user
    await asyncio.gather(*(lst.close() for lst in listeners.values()))


async def test_resume_after_id_replays_missed_events_once_in_order_then_live(
    channel: grpc.aio.Channel, realtime: RealtimeServer, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    first = await GrpcListener(channel, org.tokens[org.manager], subscribe_request()).started()
    ids = [await publish(redis, realtime.stream, "SESSION_UPDATE", org.id, {"n": n}) for n in range(3)]
    await first.recorder.wait(lambda r: len(r.events) == 3)
    await first.close()
    last_seen = first.recorder.events[-1].id
    assert last_seen == ids[-1]

    missed = [await publish(redis, realtime.stream, "SESSION_UPDATE", org.id, {"n": n}) for n in range(3, 8)]
    other = Org.create(tokens)
    await publish(redis, realtime.stream, "SESSION_UPDATE", other.id, {"n": 99})  # not ours
    again = await GrpcListener(channel, org.tokens[org.manager], subscribe_request(last_seen)).started()
    await again.recorder.wait(lambda r: len(r.events) >= 5)
    live = await publish(redis, realtime.stream, "SESSION_UPDATE", org.id, {"n": 8})
    await again.recorder.wait(lambda r: any(e.id == live for e in r.events))
    assert [e.id for e in again.recorder.events] == [*missed, live]
    assert [e.data["n"] for e in again.recorder.events] == [3, 4, 5, 6, 7, 8]
    await again.close()


async def test_resume_beyond_retention_asks_for_resync(
    channel: grpc.aio.Channel, realtime: RealtimeServer, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    old = await publish(redis, realtime.stream, "SESSION_UPDATE", org.id, {"n": 0})
    for n in range(1, 4):
        await publish(redis, realtime.stream, "SESSION_UPDATE", org.id, {"n": n})
    await redis.xtrim(realtime.stream, maxlen=1, approximate=False)
    listener = await GrpcListener(channel, org.tokens[org.manager], subscribe_request(old)).started()
    await listener.recorder.wait(lambda r: bool(listener.resyncs), what="resync")
    assert listener.resyncs[0].last_id == old
    live = await publish(redis, realtime.stream, "SESSION_UPDATE", org.id, {"n": 4})
    await listener.recorder.wait(lambda r: any(e.id == live for e in r.events))
    await listener.close()


async def test_a_subscriber_that_falls_behind_is_told_to_resync(
    settings_env: dict[str, str], rt_prefix: str, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    from services.realtime.main import Settings, build
    from workpulse.redisconn import Keys, events_stream

    running, cleanup = await build(Settings(grpc_port=0, redis_prefix=rt_prefix, subscriber_queue_size=4))
    org = Org.create(tokens)
    stream = events_stream(Keys(rt_prefix))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        stub = pb_grpc.RealtimeServiceStub(ch)
        call = stub.Subscribe(subscribe_request(), metadata=auth(org.tokens[org.manager]))
        first = await call.read()
        assert isinstance(first, pb.SubscribeResponse) and first.WhichOneof("kind") == "ready"
        # 200 events arrive at once, more than the subscriber's queue holds.
        async with redis.pipeline(transaction=True) as pipe:
            for n in range(200):
                pipe.xadd(stream, {"type": "SESSION_UPDATE", "org": org.id, "ts": "", "data": json.dumps({"n": n})})
            await pipe.execute()
        kinds = []
        while isinstance(reply := await call.read(), pb.SubscribeResponse):
            kinds.append(reply.WhichOneof("kind"))
        assert kinds[-1] == "resync"
        assert await call.code() == grpc.StatusCode.OK
    await running.server.stop(0.5)
    await cleanup()


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "missing bearer token"),
        ("not-a-jwt", "malformed token"),
    ],
)
async def test_bad_or_missing_token_is_refused(channel: grpc.aio.Channel, token: str, message: str) -> None:
    stub = pb_grpc.RealtimeServiceStub(channel)
    call = stub.Subscribe(subscribe_request(), metadata=auth(token) if token else [])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert message in (caught.value.details() or "")


async def test_expired_token_is_refused_and_expiry_ends_the_stream(
    channel: grpc.aio.Channel, tokens: TokenFactory
) -> None:
    org = str(uuid.uuid4())
    expired = tokens.user(org, role="manager", ttl=-5)
    call = pb_grpc.RealtimeServiceStub(channel).Subscribe(subscribe_request(), metadata=auth(expired))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.details() == "token expired"

    short = tokens.user(org, role="manager", ttl=2)
    started = time.monotonic()
    listener = await GrpcListener(channel, short, subscribe_request()).started()
    await listener.recorder.wait(lambda r: r.ended is not None, timeout=6, what="end of stream")
    assert isinstance(listener.recorder.ended, grpc.aio.AioRpcError)
    assert listener.recorder.ended.code() == grpc.StatusCode.UNAUTHENTICATED
    assert listener.recorder.ended.details() == "token expired"
    assert time.monotonic() - started < 4


async def test_malformed_after_id_is_invalid_argument(channel: grpc.aio.Channel, tokens: TokenFactory) -> None:
    call = pb_grpc.RealtimeServiceStub(channel).Subscribe(
        subscribe_request("yesterday"), metadata=auth(tokens.user(role="manager"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_presence_of_a_stream_online_once_offline_after_grace(
    channel: grpc.aio.Channel, realtime: RealtimeServer, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    stub = pb_grpc.RealtimeServiceStub(channel)
    boss = await GrpcListener(channel, org.tokens[org.manager], subscribe_request(presence=True)).started()
    worker = org.employees[0]
    tabs = [
        await GrpcListener(channel, org.tokens[worker], subscribe_request(presence=True)).started() for _ in range(2)
    ]

    async def online() -> set[str]:
        reply = await stub.GetPresence(pb.GetPresenceRequest(), metadata=auth(org.tokens[org.manager]))
        return {u.user_id for u in reply.users}

    assert await eventually(lambda: _is(online, {org.manager, worker}), what="both online")
    mine = await stub.GetPresence(pb.GetPresenceRequest(), metadata=auth(org.tokens[worker]))
    assert [u.user_id for u in mine.users] == [worker]  # employees see only themselves
    assert mine.users[0].connections == 2

    await tabs[0].close()  # one tab closes: still online, nothing published
    last_closed = time.time()
    await tabs[1].close()  # the last one: offline once the grace period ends
    await boss.recorder.wait(lambda r: bool(r.of_type("USER_OFFLINE")), timeout=5, what="USER_OFFLINE")
    assert await online() == {org.manager}
    assert [e.data["userId"] for e in boss.recorder.of_type("USER_ONLINE")] == [org.manager, worker]
    offline = boss.recorder.of_type("USER_OFFLINE")
    assert [e.data for e in offline] == [{"userId": worker, "organizationId": org.id, "timestamp": ANY}]
    # Stamped when the grace period (1 s) ended, not when the tab closed (ISO, millisecond precision).
    offline_at = datetime.fromisoformat(offline[0].data["timestamp"]).timestamp()
    assert last_closed + 0.99 <= offline_at <= time.time()
    await boss.close()


async def _is(probe: object, expected: set[str]) -> bool:
    assert callable(probe)
    return bool(await probe() == expected)


async def test_agent_heartbeat_by_a_service_keeps_a_user_online_until_it_lapses(
    channel: grpc.aio.Channel, realtime: RealtimeServer, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    stub = pb_grpc.RealtimeServiceStub(channel)
    boss = await GrpcListener(channel, org.tokens[org.manager], subscribe_request()).started()
    worker = org.employees[1]
    request = pb.HeartbeatRequest(connection_id="agent-1", user_id=worker, organization_id=org.id)
    reply = await stub.Heartbeat(request, metadata=auth(tokens.service("ingest")))
    assert reply.lease_seconds == 2
    await boss.recorder.wait(lambda r: bool(r.of_type("USER_ONLINE")), what="USER_ONLINE")
    started = time.monotonic()
    await boss.recorder.wait(lambda r: bool(r.of_type("USER_OFFLINE")), timeout=6, what="USER_OFFLINE on lapse")
    assert 1.5 < time.monotonic() - started < 5  # the lease (2 s) holds, then lapses
    # Services must name the user properly; users may not hold leases for someone else.
    forged = pb.HeartbeatRequest(connection_id="agent-2", user_id=worker, organization_id="x}:evil")
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.Heartbeat(forged, metadata=auth(tokens.service("ingest")))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Heartbeat(request, metadata=auth(org.tokens[org.employees[0]]))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await boss.close()
