"""A connection id names a presence lease only together with its organization and user
(issue 10): clients choose connection ids, so another tenant or another user presenting the
same id must touch only a lease of their own. Real gRPC server, real Redis."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import redis.asyncio as aioredis

from services.realtime.presence import PresenceStore, PresenceTracker
from tests.realtime.clients import GrpcListener, publish
from tests.realtime.conftest import FAST_PRESENCE, Org, RealtimeServer, auth, subscribe_request
from tests.support import TokenFactory, eventually
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc
from workpulse.redisconn import Keys

SHARED = "tab-7"
# Long enough for an orphaned lease to lapse and be swept, offline published included.
LAPSE_SECONDS = FAST_PRESENCE["presence_lease_seconds"] + FAST_PRESENCE["presence_grace_seconds"] + 1.0


def _transitions(listener: GrpcListener, user: str) -> list[str]:
    return [e.type for e in listener.recorder.of_type("USER_ONLINE", "USER_OFFLINE") if e.data["userId"] == user]


async def test_another_tenant_or_user_reusing_a_connection_id_leaves_its_owner_online(
    channel: grpc.aio.Channel, realtime: RealtimeServer, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    mine, theirs = Org.create(tokens), Org.create(tokens)
    owner, colleague = mine.employees
    stub = pb_grpc.RealtimeServiceStub(channel)
    boss = await GrpcListener(channel, mine.tokens[mine.manager], subscribe_request()).started()
    tab = await GrpcListener(channel, mine.tokens[owner], subscribe_request(presence=True, connection=SHARED)).started()
    await boss.recorder.wait(lambda r: _transitions(boss, owner) == ["USER_ONLINE"], what="owner online")

    # Another organization's user, then a colleague, subscribe with the owner's connection
    # id and go away; the other tenant also releases that id by RPC.
    for token in (theirs.tokens[theirs.employees[0]], mine.tokens[colleague]):
        intruder = GrpcListener(channel, token, subscribe_request(presence=True, connection=SHARED))
        await intruder.started()
        await intruder.close()
    await stub.Disconnect(pb.DisconnectRequest(connection_id=SHARED), metadata=auth(theirs.tokens[theirs.manager]))
    await asyncio.sleep(LAPSE_SECONDS)  # an owner's lease left unrenewed would have lapsed by now

    reply = await stub.GetPresence(pb.GetPresenceRequest(), metadata=auth(mine.tokens[mine.manager]))
    assert {u.user_id: u.connections for u in reply.users if u.user_id == owner} == {owner: 1}
    assert _transitions(boss, owner) == ["USER_ONLINE"]
    # The owner's stream still delivers.
    update = await publish(redis, realtime.stream, "SESSION_UPDATE", mine.id, {"userId": owner, "n": 1})
    await tab.recorder.wait(lambda r: any(e.id == update for e in r.events), what="the owner's event")

    # And the owner's own end still releases its lease at once (not by lapsing).
    await tab.close()
    leases = realtime.keys.key("{events}", "presence", mine.id, "leases")

    async def released() -> bool:
        return await redis.zscore(leases, f"{owner}|{SHARED}") is None

    await eventually(released, timeout=1.0, what="the owner's lease released")
    await boss.recorder.wait(lambda r: "USER_OFFLINE" in _transitions(boss, owner), what="owner offline")
    await boss.close()


async def test_a_lease_held_by_two_streams_of_its_owner_outlives_the_first(
    redis: aioredis.Redis, rt_prefix: str
) -> None:
    """A gateway re-subscribing with the same id may open the new stream on a replica before
    the old one's end is processed there: that end must not release the new stream's lease."""
    store = PresenceStore(redis, Keys(rt_prefix), maxlen=10_000)
    tracker = PresenceTracker(store, lease_seconds=60, heartbeat_seconds=5, grace_seconds=0, sweep_seconds=1)
    org, user = str(uuid.uuid4()), str(uuid.uuid4())
    await tracker.join(org, user, SHARED)
    await tracker.join(org, user, SHARED)
    await tracker.leave(org, user, SHARED)
    assert await store.sweep() == []
    assert [(p.user_id, p.connections) for p in await store.online(org)] == [(user, 1)]
    await tracker.leave(org, user, SHARED)
    assert len(await store.sweep()) == 1  # the last stream's end: offline (no grace here)
    await tracker.leave(org, user, SHARED)  # a repeated end changes nothing
    assert await store.online(org) == []
