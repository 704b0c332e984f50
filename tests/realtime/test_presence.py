"""Presence in real Redis: transitions published exactly once across replicas, and the
activity GetPresence reports."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import redis.asyncio as aioredis

from services.realtime.presence import PresenceStore
from tests.realtime.clients import GrpcListener, publish
from tests.realtime.conftest import Org, RealtimeServer, auth, subscribe_request
from tests.support import TokenFactory, eventually
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc
from workpulse.redisconn import Keys, events_stream


async def _types(redis: aioredis.Redis, stream: str) -> list[str]:
    entries: list[tuple[str, dict[str, str]]] = await redis.xrange(stream)  # type: ignore[assignment]
    return [fields["type"] for _, fields in entries]


async def test_transitions_are_published_once_whatever_the_replicas_race(redis: aioredis.Redis, rt_prefix: str) -> None:
    keys = Keys(rt_prefix)
    replicas = [PresenceStore(redis, keys, maxlen=10_000) for _ in range(2)]
    org, user = str(uuid.uuid4()), str(uuid.uuid4())
    connections = [f"c{n}" for n in range(40)]
    await asyncio.gather(
        *(replicas[n % 2].touch(org, user, c, lease_ms=60_000) for n, c in enumerate(connections)),
        *(replicas[n % 2].touch(org, user, c, lease_ms=60_000) for n, c in enumerate(connections)),  # renewals
    )
    assert (await replicas[0].online(org))[0].connections == 40
    await asyncio.gather(*(replicas[n % 2].release(org, user, c, grace_ms=0) for n, c in enumerate(connections)))
    published = await asyncio.gather(*(replicas[n % 2].sweep() for n in range(10)))
    assert sum(len(p) for p in published) == 1
    assert await _types(redis, events_stream(keys)) == ["USER_ONLINE", "USER_OFFLINE"]
    assert await replicas[1].online(org) == []


async def test_reconnect_within_grace_cancels_the_offline(redis: aioredis.Redis, rt_prefix: str) -> None:
    keys = Keys(rt_prefix)
    store = PresenceStore(redis, keys, maxlen=10_000)
    org, user = str(uuid.uuid4()), str(uuid.uuid4())
    await store.touch(org, user, "tab-1", lease_ms=60_000)
    await store.release(org, user, "tab-1", grace_ms=60_000)
    await store.touch(org, user, "tab-2", lease_ms=60_000)
    assert await store.sweep() == []
    await store.release(org, user, "tab-2", grace_ms=0)
    assert len(await store.sweep()) == 1
    assert await _types(redis, events_stream(keys)) == ["USER_ONLINE", "USER_OFFLINE"]


async def test_get_presence_reports_session_and_activity(
    channel: grpc.aio.Channel, realtime: RealtimeServer, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    worker = org.employees[0]
    tab = await GrpcListener(channel, org.tokens[worker], subscribe_request(presence=True)).started()
    stub = pb_grpc.RealtimeServiceStub(channel)
    session = str(uuid.uuid4())

    async def mine() -> pb.UserPresence | None:
        reply = await stub.GetPresence(pb.GetPresenceRequest(), metadata=auth(org.tokens[org.manager]))
        return next((u for u in reply.users if u.user_id == worker), None)

    first = await eventually(mine, what="online")
    assert first.activity == pb.ACTIVITY_IDLE and first.session_id == ""  # online, no session yet

    update = {"userId": worker, "sessionId": session, "status": "active", "total_idle_seconds": 0}
    await publish(redis, realtime.stream, "SESSION_UPDATE", org.id, {**update, "total_active_seconds": 60})

    async def active() -> pb.UserPresence | None:
        found = await mine()
        return found if found is not None and found.activity == pb.ACTIVITY_ACTIVE else None

    now = await eventually(active, what="active")
    assert now.session_id == session and now.connections == 1 and now.last_activity_at.seconds > 0
    await publish(redis, realtime.stream, "INACTIVE_ALERT", org.id, {"userId": worker, "idleMinutes": 5})

    async def idle() -> bool:
        found = await mine()
        return found is not None and found.activity == pb.ACTIVITY_IDLE and found.session_id == session

    await eventually(idle, what="idle")
    await tab.close()
