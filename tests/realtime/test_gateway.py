"""The gateway's live endpoints as real processes: realtime plus two gateways on real ports.

Events are appended to the events stream the way the outbox relay appends them.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import redis.asyncio as aioredis
import socketio

from tests.realtime.clients import SioListener, WsListener, publish
from tests.realtime.conftest import Org, auth
from tests.support import ServiceProcess, TokenFactory, eventually, free_port
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc
from workpulse.redisconn import Keys, events_stream
from workpulse.supervisor import PROCESSES

pytestmark = pytest.mark.e2e

FAST = {
    "PRESENCE_LEASE_SECONDS": "2",
    "PRESENCE_HEARTBEAT_SECONDS": "0.5",
    "PRESENCE_GRACE_SECONDS": "1",
    "PRESENCE_SWEEP_SECONDS": "0.2",
    "STREAM_KEEPALIVE_SECONDS": "1",
}
SPEC = {s.name: s for s in PROCESSES}


@dataclass
class Live:
    env: dict[str, str]
    log_dir: Path
    realtime: list[ServiceProcess]
    gateways: list[ServiceProcess]
    stream: str

    def ws(self, gateway: int = 0, query: str = "") -> str:
        return f"ws://{self.gateways[gateway].address}/ws{query}"

    def http(self, gateway: int = 0) -> str:
        return f"http://{self.gateways[gateway].address}"

    def add_gateway(self, realtime: int) -> ServiceProcess:
        """Another gateway process, talking to the given realtime replica."""
        port = free_port()
        env = {**self.env, "REALTIME_ADDR": self.realtime[realtime].address}
        gateway = ServiceProcess(SPEC["gateway"], port, env, self.log_dir / f"gateway-{port}.log")
        gateway.start()
        gateway.wait_healthy()
        self.gateways.append(gateway)
        return gateway

    def add_realtime(self) -> ServiceProcess:
        port = free_port()
        replica = ServiceProcess(SPEC["realtime"], port, self.env, self.log_dir / f"realtime-{port}.log")
        replica.start()
        replica.wait_healthy()
        self.realtime.append(replica)
        return replica


@pytest.fixture(scope="module")
def live(mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    prefix = f"{mesh_env['REDIS_PREFIX']}:gw{uuid.uuid4().hex[:6]}"
    env = {**mesh_env, **FAST, "REDIS_PREFIX": prefix}
    setup = Live(env, tmp_path_factory.mktemp("realtime-logs"), [], [], events_stream(Keys(prefix)))
    try:
        setup.add_realtime()
        setup.add_gateway(0)
        setup.add_gateway(0)
        yield setup
    finally:
        for p in [*setup.gateways, *setup.realtime]:
            if p.proc is not None:
                p.stop()


async def _presence(live: Live, token: str, realtime: int = 0) -> set[str]:
    async with grpc.aio.insecure_channel(live.realtime[realtime].address) as ch:
        reply = await pb_grpc.RealtimeServiceStub(ch).GetPresence(pb.GetPresenceRequest(), metadata=auth(token))
    return {u.user_id for u in reply.users}


SESSION = {
    "sessionId": "5f0c1a3e-0000-4000-8000-000000000001",
    "total_active_seconds": 120,
    "total_idle_seconds": 30,
    "status": "active",
    "version": 3,
}


async def test_websocket_and_socketio_clients_receive_session_update(
    live: Live, redis_client: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    worker = org.employees[0]
    manager_token = org.tokens[org.manager]
    plain = await WsListener(live.ws(0, f"?token={manager_token}")).connect()
    second_tab = await WsListener(live.ws(0, f"?token={manager_token}")).connect()
    await plain.started()
    await second_tab.started()
    expires = jwt.decode(manager_token, options={"verify_signature": False})["exp"]
    assert plain.ready is not None and second_tab.ready is not None
    connection = plain.ready["connectionId"]
    assert plain.ready == {
        "userId": org.manager,
        "organizationId": org.id,
        "role": "manager",
        "connectionId": connection,
        "tokenExpiresAt": datetime.fromtimestamp(expires, UTC).isoformat(),
    }
    # Every connection gets its own id (its presence lease), chosen by the gateway.
    assert re.fullmatch(r"[0-9a-f]{32}", connection)
    assert second_tab.ready["connectionId"] != connection
    await second_tab.close()
    sio = await SioListener(live.http(1), "SESSION_UPDATE").connect({"token": org.tokens[worker]})
    payload = {**SESSION, "userId": worker}
    event_id = await publish(redis_client, live.stream, "SESSION_UPDATE", org.id, payload)
    entries: list[tuple[str, dict[str, str]]] = await redis_client.xrange(live.stream, event_id, event_id)  # type: ignore[assignment]
    ((_, stored),) = entries
    for recorder in (plain.recorder, sio.recorder):
        await recorder.wait(lambda r: bool(r.of_type("SESSION_UPDATE")), what="SESSION_UPDATE")
        (got,) = recorder.of_type("SESSION_UPDATE")
        assert got.id == event_id
        assert {k: got.data[k] for k in payload} == payload
        assert got.data["id"] == event_id and got.data["timestamp"] == stored["ts"]
    await plain.close()
    await sio.close()


async def test_token_in_header_or_subprotocol_is_accepted(live: Live, tokens: TokenFactory) -> None:
    token = tokens.user(role="employee")
    by_header = await WsListener(live.ws()).connect(additional_headers={"Authorization": f"Bearer {token}"})
    by_protocol = await WsListener(live.ws()).connect(subprotocols=["workpulse.v1", f"bearer.{token}"])
    for listener in (by_header, by_protocol):
        await listener.started()
        await listener.close()
    assert by_protocol._ws.subprotocol == "workpulse.v1"


@pytest.mark.parametrize(
    ("query", "reason"),
    [("", "missing bearer token"), ("?token=forged", "malformed token"), ("?after=yesterday&token=", "")],
)
async def test_bad_or_missing_token_refuses_the_websocket_with_a_reason(
    live: Live, tokens: TokenFactory, query: str, reason: str
) -> None:
    if query.endswith("token="):
        query += tokens.user()
        expected = (4400, "after_id: not an event id")
    else:
        expected = (4401, reason)
    listener = await WsListener(live.ws(0, query)).connect()
    assert await listener.closed() == expected
    assert listener.ready is None


async def test_bad_token_refuses_socketio_with_a_reason(live: Live, tokens: TokenFactory) -> None:
    expired = tokens.user(role="manager", ttl=-10)
    for given, reason in (({}, "missing bearer token"), ({"token": expired}, "token expired")):
        client = SioListener(live.http())
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(given)
        assert client.errors == [{"message": reason}]


async def test_token_expiring_mid_connection_closes_it(live: Live, tokens: TokenFactory) -> None:
    org = str(uuid.uuid4())
    started = time.monotonic()
    plain = await WsListener(live.ws(0, f"?token={tokens.user(org, ttl=2)}")).connect()
    await plain.started()
    sio = SioListener(live.http(1))
    await sio.connect({"token": tokens.user(org, ttl=2)})
    assert await plain.closed(timeout=8) == (4401, "token expired")
    await sio.recorder.wait(lambda r: r.ended is not None, timeout=8, what="socket.io disconnect")
    assert sio.errors == [{"statusCode": 401, "message": "token expired"}]
    assert time.monotonic() - started < 6


async def test_reconnect_with_last_id_gets_missed_events_once_in_order(
    live: Live, redis_client: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    token = org.tokens[org.manager]
    first = await WsListener(live.ws(0, f"?token={token}")).connect()
    await first.started()
    await publish(redis_client, live.stream, "SESSION_UPDATE", org.id, {"n": 0})
    await first.recorder.wait(lambda r: len(r.of_type("SESSION_UPDATE")) == 1)
    await first.close()
    last = first.recorder.events[-1].id
    missed = [await publish(redis_client, live.stream, "SESSION_UPDATE", org.id, {"n": n}) for n in range(1, 6)]
    # Resume on the other gateway: ids are the stream's, valid everywhere.
    again = await WsListener(live.ws(1, f"?token={token}&after={last}")).connect()
    await again.started()
    await again.recorder.wait(lambda r: len(r.of_type("SESSION_UPDATE")) >= 5)
    live_id = await publish(redis_client, live.stream, "SESSION_UPDATE", org.id, {"n": 6})
    await again.recorder.wait(lambda r: any(e.id == live_id for e in r.events))
    updates = again.recorder.of_type("SESSION_UPDATE")
    assert [e.id for e in updates] == [*missed, live_id]
    assert [e.data["n"] for e in updates] == [1, 2, 3, 4, 5, 6]
    await again.close()

    sio = SioListener(live.http(0), "SESSION_UPDATE")
    await sio.connect({"token": token, "lastEventId": missed[2]})
    await sio.recorder.wait(lambda r: len(r.events) >= 3)
    await asyncio.sleep(0.2)  # nothing more may follow
    assert [e.id for e in sio.recorder.events] == [*missed[3:], live_id]
    await sio.close()


async def test_quick_reconnect_causes_no_presence_flap(
    live: Live, redis_client: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    worker = org.employees[0]
    boss = await WsListener(live.ws(1, f"?token={org.tokens[org.manager]}")).connect()
    await boss.started()
    tab = await WsListener(live.ws(0, f"?token={org.tokens[worker]}")).connect()
    await tab.started()
    await boss.recorder.wait(lambda r: worker in {e.data["userId"] for e in r.of_type("USER_ONLINE")})
    for _ in range(3):  # page reloads, each well within the grace period
        await tab.close()
        tab = await WsListener(live.ws(0, f"?token={org.tokens[worker]}")).connect()
        await tab.started()
    await asyncio.sleep(1.5)  # longer than the grace period: a flap would have been published by now
    await publish(redis_client, live.stream, "BARRIER", org.id, {"userId": worker})
    await boss.recorder.wait(lambda r: bool(r.of_type("BARRIER")))
    presence = [(e.type, e.data["userId"]) for e in boss.recorder.of_type("USER_ONLINE", "USER_OFFLINE")]
    assert presence.count(("USER_ONLINE", worker)) == 1
    assert ("USER_OFFLINE", worker) not in presence
    await tab.close()
    await boss.recorder.wait(lambda r: ("USER_OFFLINE", worker) in [(e.type, e.data["userId"]) for e in r.events])
    await boss.close()


async def test_killed_gateway_takes_its_users_offline_within_the_bound(
    live: Live, redis_client: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    doomed = live.add_gateway(0)
    boss = await WsListener(live.ws(1, f"?token={org.tokens[org.manager]}")).connect()
    await boss.started()
    staying, leaving = org.employees
    a = await WsListener(live.ws(0, f"?token={org.tokens[staying]}")).connect()
    b = await WsListener(f"ws://{doomed.address}/ws?token={org.tokens[leaving]}").connect()
    await asyncio.gather(a.started(), b.started())
    manager_token = org.tokens[org.manager]
    await eventually(lambda: _is_set(_presence(live, manager_token), set(org.users)), what="all online")

    doomed.kill()
    killed = time.monotonic()
    await boss.recorder.wait(
        lambda r: ("USER_OFFLINE", leaving) in [(e.type, e.data["userId"]) for e in r.events], timeout=10
    )
    assert time.monotonic() - killed < 5  # grace 1 s + sweep 0.2 s, with room for a busy machine
    assert await _presence(live, manager_token) == {org.manager, staying}
    await a.close()
    await boss.close()


async def test_killed_realtime_replica_leases_lapse_within_the_bound(
    live: Live, redis_client: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    replica = live.add_realtime()
    other = live.add_gateway(len(live.realtime) - 1)
    boss = await WsListener(live.ws(0, f"?token={org.tokens[org.manager]}")).connect()
    await boss.started()
    worker = org.employees[1]
    orphan = await WsListener(f"ws://{other.address}/ws?token={org.tokens[worker]}").connect()
    await orphan.started()
    await boss.recorder.wait(lambda r: worker in {e.data["userId"] for e in r.of_type("USER_ONLINE")})

    replica.kill()  # its leases are never renewed nor released: only the sweep ends them
    killed = time.monotonic()
    await boss.recorder.wait(
        lambda r: ("USER_OFFLINE", worker) in [(e.type, e.data["userId"]) for e in r.events], timeout=10
    )
    assert time.monotonic() - killed < 5  # lease 2 s + sweep 0.2 s, with room for a busy machine
    # The gateway could not re-subscribe anywhere and tells its client so.
    assert await orphan.closed(timeout=15) == (4503, "realtime service unavailable")
    await boss.close()
    other.stop()


async def test_slow_client_gets_resync_and_never_slows_the_others(
    live: Live, redis_client: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    token = org.tokens[org.manager]
    fast = await WsListener(live.ws(0, f"?token={token}")).connect()
    await fast.started()
    # A client with a tiny receive buffer that stops reading right after ready.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", live.gateways[0].port))
    import websockets

    slow = await websockets.connect(live.ws(0, f"?token={token}"), sock=sock, max_queue=1, compression=None)
    await slow.recv()  # ready
    slow.transport.pause_reading()
    total, chunk = 2000, 100
    padding = "x" * 8000  # 16 MB in all: more than the socket buffers hold
    started = time.monotonic()
    for first in range(0, total, chunk):  # 500 events/s: a pace a reading client keeps up with
        async with redis_client.pipeline(transaction=False) as pipe:
            for n in range(first, first + chunk):
                await publish(pipe, live.stream, "SESSION_UPDATE", org.id, {"n": n, "pad": padding})
            await pipe.execute()
        await asyncio.sleep(0.2)
    await fast.recorder.wait(
        lambda r: len(r.of_type("SESSION_UPDATE")) == total, timeout=30, what="all events at the fast client"
    )
    assert not [f for f in fast.frames if f["event"] == "resync"]
    fast_seconds = time.monotonic() - started
    slow.transport.resume_reading()
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["data"].get("n") != total - 1:
        frames.append(json.loads(await asyncio.wait_for(slow.recv(), 10)))
    resyncs = [f for f in frames if f["event"] == "resync"]
    assert resyncs and len([f for f in frames if f["event"] == "SESSION_UPDATE"]) < total
    assert fast_seconds < 20
    await slow.close()

    # The resync names the last event delivered: resuming after it replays what was dropped.
    first_gap = resyncs[0]["data"]["lastId"]
    seen_before = [f["data"]["n"] for f in frames[: frames.index(resyncs[0])] if f["event"] == "SESSION_UPDATE"]
    resumed = await WsListener(live.ws(0, f"?token={token}&after={first_gap}")).connect()
    await resumed.started()
    await resumed.recorder.wait(
        lambda r: any(e.data.get("n") == total - 1 for e in r.events), timeout=30, what="replay to the end"
    )
    replayed = [e.data["n"] for e in resumed.recorder.of_type("SESSION_UPDATE")]
    assert seen_before + replayed == list(range(total))
    await resumed.close()
    await fast.close()


async def _is_set(probe: object, expected: set[str]) -> bool:
    assert asyncio.iscoroutine(probe)
    return bool(await probe == expected)


async def test_gateway_resubscribes_after_losing_its_realtime_replica_without_gap_or_repeat(
    live: Live, redis_client: aioredis.Redis, tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    token = org.tokens[org.manager]
    replica = live.add_realtime()
    gateway = live.add_gateway(len(live.realtime) - 1)
    # Both clients resume after an old event: a re-subscription that forgot what they already
    # received would replay it to them again.
    old = await publish(redis_client, live.stream, "SESSION_UPDATE", org.id, {"n": 0})
    seen = await publish(redis_client, live.stream, "SESSION_UPDATE", org.id, {"n": 1})
    plain = await WsListener(f"ws://{gateway.address}/ws?token={token}&after={old}").connect()
    await plain.started()
    sio = await SioListener(f"http://{gateway.address}", "SESSION_UPDATE").connect({"token": token, "lastEventId": old})
    recorders = (plain.recorder, sio.recorder)
    for recorder in recorders:
        await recorder.wait(lambda r: any(e.id == seen for e in r.events), what="the replayed event")

    replica.kill()  # the only replica this gateway knows, mid-subscription
    killed = time.monotonic()
    # Committed while no replica serves the gateway: only a resume after the last id delivers it.
    missed = await publish(redis_client, live.stream, "SESSION_UPDATE", org.id, {"n": 2})
    replica.restart()  # same port: the gateway's channel finds it again
    latest = await publish(redis_client, live.stream, "SESSION_UPDATE", org.id, {"n": 3})
    for recorder in recorders:
        await recorder.wait(
            lambda r: r.ended is not None or any(e.id == latest for e in r.events), timeout=15, what="the live event"
        )
        assert [e.id for e in recorder.of_type("SESSION_UPDATE")] == [seen, missed, latest]
        assert recorder.ended is None  # the browser never saw the loss
    assert time.monotonic() - killed < 12  # the gateway gives up re-subscribing after 10 s
    assert not [f for f in plain.frames if f["event"] == "resync"]
    await plain.close()
    await sio.close()
    gateway.stop()
