"""GetPresence in real Redis: the member's current app (folded from ACTIVITY_RECORDED), and
the user_ids filter, which narrows the caller's audience and never widens or reveals it."""

from __future__ import annotations

import uuid

import grpc
import pytest
import redis.asyncio as aioredis

from tests.realtime.clients import GrpcListener, publish
from tests.realtime.conftest import Org, RealtimeServer, auth, subscribe_request
from tests.support import TokenFactory, eventually
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc


async def _seen(channel: grpc.aio.Channel, token: str, user_ids: list[str] | None = None) -> list[str]:
    request = pb.GetPresenceRequest(user_ids=user_ids or [])
    reply = await pb_grpc.RealtimeServiceStub(channel).GetPresence(request, metadata=auth(token))
    return [u.user_id for u in reply.users]


async def test_named_users_are_exactly_the_visible_online_ones_named(
    channel: grpc.aio.Channel, realtime: RealtimeServer, tokens: TokenFactory
) -> None:
    ours, theirs = Org.create(tokens), Org.create(tokens)
    tabs = [
        await GrpcListener(channel, org.tokens[u], subscribe_request(presence=True)).started()
        for org in (ours, theirs)
        for u in org.users
    ]
    first, second = ours.employees
    manager, worker = ours.tokens[ours.manager], ours.tokens[first]

    async def everyone_online() -> bool:
        return sorted(await _seen(channel, manager)) == sorted(ours.users)

    await eventually(everyone_online, what="the organization online")
    stranger, nobody = theirs.employees[0], str(uuid.uuid4())
    # Another tenant's (online) member and an id of nobody are simply absent; ids compare
    # in canonical form, and a repeat is one entry.
    named = [second, stranger, nobody, first.upper(), first]
    assert sorted(await _seen(channel, manager, named)) == sorted([first, second])
    assert await _seen(channel, manager, [stranger]) == []
    # An employee's audience is themselves, whatever they name.
    assert await _seen(channel, worker) == [first]
    assert await _seen(channel, worker, [second]) == []
    assert await _seen(channel, worker, [second, first]) == [first]
    for tab in tabs:
        await tab.close()


@pytest.mark.parametrize(
    ("user_ids", "message"),
    [
        (["not-a-uuid"], "user_ids: must be a UUID"),
        ([str(uuid.uuid4()), ""], "user_ids: must be a UUID"),
        ([str(uuid.uuid4()) for _ in range(501)], "user_ids: at most 500 ids"),
    ],
    ids=["malformed", "empty", "501"],
)
async def test_bad_user_ids_are_invalid_argument_naming_the_field(
    channel: grpc.aio.Channel, realtime: RealtimeServer, tokens: TokenFactory, user_ids: list[str], message: str
) -> None:
    org = Org.create(tokens)
    for caller in (org.manager, org.employees[0]):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _seen(channel, org.tokens[caller], user_ids)
        assert (refused.value.code(), refused.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert len(await _seen(channel, org.tokens[org.manager], [str(uuid.uuid4()) for _ in range(500)])) == 0


async def test_the_current_app_follows_the_sessions_activity_recorded(
    channel: grpc.aio.Channel, realtime: RealtimeServer, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    worker, manager = org.employees[0], org.tokens[org.manager]
    tab = await GrpcListener(channel, org.tokens[worker], subscribe_request(presence=True)).started()
    session = str(uuid.uuid4())
    stub = pb_grpc.RealtimeServiceStub(channel)

    async def app_is(expected: str) -> pb.UserPresence | None:
        request = pb.GetPresenceRequest(user_ids=[worker])
        (found,) = (await stub.GetPresence(request, metadata=auth(manager))).users or (None,)
        return found if found is not None and found.current_app == expected else None

    start = {"userId": worker, "sessionId": session, "status": "active", "total_active_seconds": 0}
    await publish(redis, realtime.stream, "SESSION_STARTED", org.id, {**start, "total_idle_seconds": 0})
    await eventually(lambda: app_is(""), what="online, no app before any activity")
    recorded = {"sessionId": session, "userId": worker, "eventCount": 2, "activeSeconds": 10, "idleSeconds": 0}
    await publish(redis, realtime.stream, "ACTIVITY_RECORDED", org.id, {**recorded, "appName": "Figma"})
    shown = await eventually(lambda: app_is("Figma"), what="the recorded app")
    assert shown.session_id == session
    # An older session's late upload leaves it (the alert after it shows it was folded).
    late = {**recorded, "sessionId": str(uuid.uuid4()), "appName": "Steam"}
    await publish(redis, realtime.stream, "ACTIVITY_RECORDED", org.id, late)
    await publish(redis, realtime.stream, "INACTIVE_ALERT", org.id, {"userId": worker, "sessionId": session})

    async def idle() -> pb.UserPresence | None:
        found = await app_is("Figma")
        return found if found is not None and found.activity == pb.ACTIVITY_IDLE else None

    await eventually(idle, what="idle, still in Figma")
    # A write whose app is not shared (appName null) clears it.
    await publish(redis, realtime.stream, "ACTIVITY_RECORDED", org.id, {**recorded, "appName": None})
    await eventually(lambda: app_is(""), what="the app cleared by a write that does not share it")
    await tab.close()
