"""Agent silence in real Redis: an open session unheard of past its organization's allowance
is agent_silent (not idle) in GetPresence and the live events, each transition published
once whatever the number of replicas, and back when activity arrives.

The allowance comes from AGENT_POLICY_UPDATED, appended here as ingest's relay would."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from services.realtime.activity import ActivityStore
from services.realtime.domain import Event, iso_of_ms, parse_stream_id
from services.realtime.main import Settings, build
from services.realtime.silence import AgentSilence
from tests.realtime.clients import GrpcListener, Recorder, publish
from tests.realtime.conftest import FAST_PRESENCE, Org, RealtimeServer, auth, subscribe_request
from tests.support import TokenFactory, eventually
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc
from workpulse.redisconn import Keys, events_stream

SILENT, RESUMED = "USER_AGENT_SILENT", "USER_AGENT_RESUMED"


async def _allow(redis: aioredis.Redis, rt: RealtimeServer, org: str, seconds: int | None, version: int = 1) -> str:
    payload = {"organizationId": org, "version": version, "agentSilenceSeconds": seconds}
    return await publish(redis, rt.stream, "AGENT_POLICY_UPDATED", org, payload)


async def _start(redis: aioredis.Redis, rt: RealtimeServer, org: str, user: str, session: str, **totals: int) -> str:
    data = {"userId": user, "sessionId": session, "status": "active", "total_active_seconds": 0}
    return await publish(redis, rt.stream, "SESSION_UPDATE", org, {**data, "total_idle_seconds": 0, **totals})


async def _recorded(redis: aioredis.Redis, rt: RealtimeServer, org: str, user: str, session: str) -> str:
    data = {"sessionId": session, "userId": user, "eventCount": 1, "activeSeconds": 30, "idleSeconds": 0}
    return await publish(redis, rt.stream, "ACTIVITY_RECORDED", org, data)


async def _entries(redis: aioredis.Redis, stream: str, kind: str, user: str) -> list[dict[str, Any]]:
    found: list[tuple[str, dict[str, str]]] = await redis.xrange(stream)  # type: ignore[assignment]
    return [
        json.loads(f["data"]) for _, f in found if f["type"] == kind and json.loads(f["data"]).get("userId") == user
    ]


def _of(recorder: Recorder, kind: str, user: str) -> list[dict[str, Any]]:
    """The payloads (and event ids) of ``user``'s events of one kind a listener received."""
    return [{**e.data, "id": e.id} for e in recorder.of_type(kind) if e.data.get("userId") == user]


def _iso(entry_id: str) -> str:
    return iso_of_ms(parse_stream_id(entry_id)[0])


async def _presence(channel: grpc.aio.Channel, token: str, user: str) -> pb.UserPresence | None:
    reply = await pb_grpc.RealtimeServiceStub(channel).GetPresence(pb.GetPresenceRequest(), metadata=auth(token))
    return next((u for u in reply.users if u.user_id == user), None)


async def test_an_unheard_session_turns_agent_silent_and_back_when_activity_arrives(
    channel: grpc.aio.Channel, realtime: RealtimeServer, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    worker, manager = org.employees[0], org.tokens[org.manager]
    boss = await GrpcListener(channel, manager, subscribe_request()).started()
    mine = await GrpcListener(channel, org.tokens[worker], subscribe_request(presence=True)).started()
    await _allow(redis, realtime, org.id, 2)
    session = str(uuid.uuid4())
    started = await _start(redis, realtime, org.id, worker, session)

    await boss.recorder.wait(lambda r: bool(_of(r, SILENT, worker)), what="USER_AGENT_SILENT")
    silent = _of(boss.recorder, SILENT, worker)[0]
    assert {k: v for k, v in silent.items() if k not in ("id", "timestamp")} == {
        "userId": worker,
        "organizationId": org.id,
        "sessionId": session,
        "activity": "agent_silent",
        "lastAgentContactAt": _iso(started),
        "agentSilenceSeconds": 2,
    }
    # Not before the allowance had passed since the last contact.
    assert parse_stream_id(silent["id"])[0] - parse_stream_id(started)[0] > 2000
    await mine.recorder.wait(lambda r: bool(_of(r, SILENT, worker)), what="the user's own USER_AGENT_SILENT")
    seen = await _presence(channel, manager, worker)
    assert seen is not None and seen.activity == pb.ACTIVITY_AGENT_SILENT and seen.session_id == session
    assert seen.agent_silence_seconds == 2
    assert seen.last_agent_contact_at.ToDatetime().isoformat() + "+00:00" == _iso(started)

    recorded = await _recorded(redis, realtime, org.id, worker, session)
    await boss.recorder.wait(lambda r: bool(_of(r, RESUMED, worker)), what="USER_AGENT_RESUMED")
    resumed = _of(boss.recorder, RESUMED, worker)[0]
    assert {k: v for k, v in resumed.items() if k not in ("id", "timestamp")} == {
        "userId": worker,
        "organizationId": org.id,
        "sessionId": session,
        "reason": "activity",
        "activity": "active",
        "lastAgentContactAt": _iso(recorded),
        "previousAgentContactAt": _iso(started),
    }
    back = await _presence(channel, manager, worker)
    assert back is not None and back.activity == pb.ACTIVITY_ACTIVE
    assert len(_of(boss.recorder, SILENT, worker)) == 1
    for listener in (boss, mine):
        await listener.close()


async def test_an_agent_reporting_idle_is_idle_not_silent_until_it_stops(
    channel: grpc.aio.Channel, realtime: RealtimeServer, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    worker, manager = org.employees[0], org.tokens[org.manager]
    mine = await GrpcListener(channel, org.tokens[worker], subscribe_request(presence=True)).started()
    await _allow(redis, realtime, org.id, 1)
    session = str(uuid.uuid4())
    await _start(redis, realtime, org.id, worker, session, total_active_seconds=60)
    # The agent keeps reporting idle time, well within the allowance, for three allowances.
    for n in range(1, 11):
        await asyncio.sleep(0.3)
        await _start(redis, realtime, org.id, worker, session, total_active_seconds=60, total_idle_seconds=n * 30)
    seen = await _presence(channel, manager, worker)
    assert seen is not None and seen.activity == pb.ACTIVITY_IDLE and seen.session_id == session
    assert await _entries(redis, realtime.stream, SILENT, worker) == []

    # Then it stops reporting: silent. The session's stop ends the silence.
    await mine.recorder.wait(lambda r: bool(_of(r, SILENT, worker)), what="USER_AGENT_SILENT")
    stop = {"userId": worker, "sessionId": session, "status": "stopped", "total_active_seconds": 60}
    await publish(redis, realtime.stream, "SESSION_UPDATE", org.id, {**stop, "total_idle_seconds": 300})
    await mine.recorder.wait(lambda r: bool(_of(r, RESUMED, worker)), what="USER_AGENT_RESUMED")
    ended = _of(mine.recorder, RESUMED, worker)[0]
    assert (ended["reason"], ended["activity"], ended["lastAgentContactAt"]) == ("session_stopped", None, None)
    gone = await _presence(channel, manager, worker)
    assert gone is not None and gone.activity == pb.ACTIVITY_IDLE and gone.session_id == ""
    await mine.close()


async def test_news_without_new_activity_leaves_the_agent_silent(
    channel: grpc.aio.Channel, realtime: RealtimeServer, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    worker = org.employees[0]
    boss = await GrpcListener(channel, org.tokens[org.manager], subscribe_request()).started()
    tab = await GrpcListener(channel, org.tokens[worker], subscribe_request(presence=True)).started()
    await _allow(redis, realtime, org.id, 1)
    session = str(uuid.uuid4())
    await _start(redis, realtime, org.id, worker, session, total_active_seconds=60)
    await boss.recorder.wait(lambda r: bool(_of(r, SILENT, worker)), what="USER_AGENT_SILENT")
    # An edit of the session (same totals), an alert, another session's late upload.
    await _start(redis, realtime, org.id, worker, session, total_active_seconds=60, version=5)
    await publish(redis, realtime.stream, "INACTIVE_ALERT", org.id, {"userId": worker, "sessionId": session})
    await _recorded(redis, realtime, org.id, worker, str(uuid.uuid4()))
    marker = await publish(redis, realtime.stream, "OVERTIME_ALERT", org.id, {"userId": worker})
    await boss.recorder.wait(lambda r: any(e.id == marker for e in r.events), what="the marker")
    await asyncio.sleep(0.5)  # observers run beside delivery
    assert _of(boss.recorder, RESUMED, worker) == []
    seen = await _presence(channel, org.tokens[org.manager], worker)
    assert seen is not None and seen.activity == pb.ACTIVITY_AGENT_SILENT
    for listener in (boss, tab):
        await listener.close()


@pytest.fixture
async def second_replica(settings_env: dict[str, str], realtime: RealtimeServer) -> AsyncIterator[RealtimeServer]:
    settings = Settings(grpc_port=0, redis_prefix=realtime.settings.redis_prefix, **FAST_PRESENCE)  # type: ignore[arg-type]
    running, cleanup = await build(settings)
    yield RealtimeServer(f"127.0.0.1:{running.port}", realtime.keys, settings)
    await running.server.stop(0.5)
    await cleanup()


async def test_each_transition_is_published_once_with_two_replicas_to_its_audience(
    channel: grpc.aio.Channel,
    realtime: RealtimeServer,
    second_replica: RealtimeServer,
    redis: aioredis.Redis,
    tokens: TokenFactory,
) -> None:
    org = Org.create(tokens)
    async with grpc.aio.insecure_channel(second_replica.address) as other:
        boss = await GrpcListener(channel, org.tokens[org.manager], subscribe_request()).started()
        own = [await GrpcListener(other, org.tokens[e], subscribe_request()).started() for e in org.employees]
        await _allow(redis, realtime, org.id, 1)
        sessions = {e: str(uuid.uuid4()) for e in org.employees}
        for e, s in sessions.items():
            await _start(redis, realtime, org.id, e, s)
        await boss.recorder.wait(lambda r: all(_of(r, SILENT, e) for e in org.employees), what="both silences")
        await asyncio.sleep(1.0)  # five more sweeps of each replica
        for e, s in sessions.items():
            assert len(await _entries(redis, realtime.stream, SILENT, e)) == 1
            await _recorded(redis, realtime, org.id, e, s)
        await boss.recorder.wait(lambda r: all(_of(r, RESUMED, e) for e in org.employees), what="both resumes")
        for e in org.employees:
            assert len(await _entries(redis, realtime.stream, RESUMED, e)) == 1  # both replicas folded it
        # Each employee saw their own transitions only; the manager saw everyone's.
        for listener, employee in zip(own, org.employees, strict=True):
            await listener.recorder.wait(lambda r, e=employee: bool(_of(r, RESUMED, e)), what="own resume")
            kinds = [(x.type, x.data["userId"]) for x in listener.recorder.of_type(SILENT, RESUMED)]
            assert kinds[:2] == [(SILENT, employee), (RESUMED, employee)]
            assert {u for _, u in kinds} == {employee}
        for listener in (boss, *own):
            await listener.close()


async def test_another_organization_s_allowance_does_not_apply(
    channel: grpc.aio.Channel, realtime: RealtimeServer, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    strict, other = Org.create(tokens), Org.create(tokens)
    await GrpcListener(channel, strict.tokens[strict.manager], subscribe_request()).started()
    await _allow(redis, realtime, strict.id, 1)
    # Published for `other`, naming `strict`: not a policy of either.
    await publish(
        redis,
        realtime.stream,
        "AGENT_POLICY_UPDATED",
        other.id,
        {"organizationId": strict.id, "version": 9, "agentSilenceSeconds": 1},
    )
    tabs = [
        await GrpcListener(channel, o.tokens[o.employees[0]], subscribe_request(presence=True)).started()
        for o in (strict, other)
    ]
    for o in (strict, other):
        await _start(redis, realtime, o.id, o.employees[0], str(uuid.uuid4()))
    await eventually(lambda: _entries(redis, realtime.stream, SILENT, strict.employees[0]), what="strict's silence")
    await asyncio.sleep(1.5)  # a window for what must not happen: several more sweeps
    assert await _entries(redis, realtime.stream, SILENT, other.employees[0]) == []
    seen = await _presence(channel, other.tokens[other.manager], other.employees[0])
    assert seen is not None and seen.activity == pb.ACTIVITY_ACTIVE and seen.agent_silence_seconds == 120
    for tab in tabs:
        await tab.close()


async def test_a_longer_allowance_ends_the_silences_it_covers_and_older_policies_are_ignored(
    channel: grpc.aio.Channel, realtime: RealtimeServer, redis: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    worker = org.employees[0]
    boss = await GrpcListener(channel, org.tokens[org.manager], subscribe_request()).started()
    tab = await GrpcListener(channel, org.tokens[worker], subscribe_request(presence=True)).started()
    await _allow(redis, realtime, org.id, 1, version=1)
    await _start(redis, realtime, org.id, worker, str(uuid.uuid4()))
    await boss.recorder.wait(lambda r: bool(_of(r, SILENT, worker)), what="USER_AGENT_SILENT")
    await _allow(redis, realtime, org.id, 600, version=2)
    await boss.recorder.wait(lambda r: bool(_of(r, RESUMED, worker)), what="USER_AGENT_RESUMED")
    assert _of(boss.recorder, RESUMED, worker)[0]["reason"] == "allowance_changed"
    await _allow(redis, realtime, org.id, 1, version=1)  # a late copy of the old policy
    await asyncio.sleep(1.5)  # a window for what must not happen: several more sweeps
    assert len(_of(boss.recorder, SILENT, worker)) == 1
    seen = await _presence(channel, org.tokens[org.manager], worker)
    assert seen is not None and seen.activity == pb.ACTIVITY_ACTIVE and seen.agent_silence_seconds == 600
    for listener in (boss, tab):
        await listener.close()


async def test_a_replica_judges_silence_only_after_watching_for_the_allowance(
    redis: aioredis.Redis, rt_prefix: str
) -> None:
    """After every replica restarted, the contacts in Redis are stale: none may be called
    silent before a replica has itself watched the stream for the whole allowance."""
    keys = Keys(rt_prefix)
    org, user, session = (str(uuid.uuid4()) for _ in range(3))
    long_ago = int(time.time() * 1000) - 130_000  # over the default 120 s
    start = {"userId": user, "sessionId": session, "status": "active", "total_active_seconds": 0}
    fields = {"type": "SESSION_UPDATE", "org": org, "ts": "t", "data": json.dumps({**start, "total_idle_seconds": 0})}
    await ActivityStore(redis, keys, maxlen=10_000).observe([Event.from_entry(f"{long_ago}-0", fields)])

    def replica(since: float) -> AgentSilence:
        return AgentSilence(redis, keys, maxlen=10_000, default_seconds=120, watching_since=lambda: since)

    assert await replica(time.time() - 60).sweep() == []
    published = await asyncio.gather(*(replica(time.time() - 600).sweep() for _ in range(4)))
    assert sum(len(p) for p in published) == 1
    assert [e["sessionId"] for e in await _entries(redis, events_stream(keys), SILENT, user)] == [session]
