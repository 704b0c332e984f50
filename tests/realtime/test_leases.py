"""Presence leases held by RPC (Heartbeat, Disconnect), the way ingest holds an agent's:
real gRPC server, real Redis. Leases here last a minute, so a user who goes offline within
seconds was released, not lapsed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest
import redis.asyncio as aioredis

from services.realtime.main import Settings, build
from tests.realtime.clients import GrpcListener, publish
from tests.realtime.conftest import FAST_PRESENCE, Org, auth, subscribe_request
from tests.support import InProcessServer, TokenFactory, start_in_process
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc
from workpulse.redisconn import Keys, events_stream

LEASE_SECONDS = 60.0


@pytest.fixture
async def server(
    settings_env: dict[str, str], rt_prefix: str
) -> AsyncIterator[InProcessServer[pb_grpc.RealtimeServiceAsyncStub]]:
    fast = {**FAST_PRESENCE, "presence_lease_seconds": LEASE_SECONDS}
    settings = Settings(grpc_port=0, redis_prefix=rt_prefix, **fast)  # type: ignore[arg-type]
    running, stop = await start_in_process(build, settings, pb_grpc.RealtimeServiceStub)
    yield running
    await stop()


async def _online(stub: pb_grpc.RealtimeServiceAsyncStub, org: Org) -> dict[str, int]:
    """Who of ``org`` is online, as its manager sees it, with their connection counts."""
    reply = await stub.GetPresence(pb.GetPresenceRequest(), metadata=auth(org.tokens[org.manager]))
    return {u.user_id: u.connections for u in reply.users}


def _transitions(listener: GrpcListener, user: str) -> list[str]:
    return [e.type for e in listener.recorder.of_type("USER_ONLINE", "USER_OFFLINE") if e.data["userId"] == user]


async def test_disconnect_by_a_service_releases_the_lease_and_publishes_offline_once(
    server: InProcessServer[pb_grpc.RealtimeServiceAsyncStub],
    redis: aioredis.Redis,
    rt_prefix: str,
    tokens: TokenFactory,
) -> None:
    org = Org.create(tokens)
    worker, colleague = org.employees
    stub = server.stub
    ingest = auth(tokens.service("ingest"))
    boss = await GrpcListener(server.channel, org.tokens[org.manager], subscribe_request()).started()
    agents = [pb.DisconnectRequest(connection_id=c, user_id=worker, organization_id=org.id) for c in ("a-1", "a-2")]
    for agent in agents:
        held = pb.HeartbeatRequest(connection_id=agent.connection_id, user_id=worker, organization_id=org.id)
        await stub.Heartbeat(held, metadata=ingest)
    await boss.recorder.wait(lambda r: _transitions(boss, worker) == ["USER_ONLINE"], what="USER_ONLINE")

    # A colleague can release neither the worker's lease nor, by naming its id, any of it.
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.Disconnect(agents[0], metadata=auth(org.tokens[colleague]))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await stub.Disconnect(pb.DisconnectRequest(connection_id="a-1"), metadata=auth(org.tokens[colleague]))
    assert await _online(stub, org) == {worker: 2}

    await stub.Disconnect(agents[0], metadata=ingest)  # one agent of two: still online
    assert await _online(stub, org) == {worker: 1}
    await stub.Disconnect(agents[1], metadata=ingest)
    released = time.monotonic()
    await boss.recorder.wait(lambda r: "USER_OFFLINE" in _transitions(boss, worker), what="USER_OFFLINE")
    assert time.monotonic() - released < 5  # grace 1 s + sweep 0.2 s; the lease would hold 60 s
    assert await _online(stub, org) == {}

    await stub.Disconnect(agents[1], metadata=ingest)  # a repeated release changes nothing
    await publish(redis, events_stream(Keys(rt_prefix)), "BARRIER", org.id, {"userId": worker})
    await boss.recorder.wait(lambda r: bool(r.of_type("BARRIER")), what="barrier")
    assert _transitions(boss, worker) == ["USER_ONLINE", "USER_OFFLINE"]
    await boss.close()


async def test_a_user_releases_their_own_lease(
    server: InProcessServer[pb_grpc.RealtimeServiceAsyncStub], tokens: TokenFactory
) -> None:
    org = Org.create(tokens)
    worker = org.employees[0]
    boss = await GrpcListener(server.channel, org.tokens[org.manager], subscribe_request()).started()
    mine = auth(org.tokens[worker])
    await server.stub.Heartbeat(pb.HeartbeatRequest(connection_id="tab-1"), metadata=mine)
    assert await _online(server.stub, org) == {worker: 1}
    await server.stub.Disconnect(pb.DisconnectRequest(connection_id="tab-1", user_id=worker), metadata=mine)
    released = time.monotonic()
    await boss.recorder.wait(lambda r: "USER_OFFLINE" in _transitions(boss, worker), what="USER_OFFLINE")
    assert time.monotonic() - released < 5
    assert await _online(server.stub, org) == {}
    await boss.close()


BAD_LEASES = [
    pytest.param("user", {"connection_id": ""}, id="user-no-connection"),
    pytest.param("user", {"connection_id": "x" * 129}, id="user-connection-too-long"),
    pytest.param("user", {"connection_id": "tab|1"}, id="user-connection-with-separator"),
    pytest.param("user", {"connection_id": "tab\n1"}, id="user-connection-unprintable"),
    pytest.param("service", {"connection_id": ""}, id="service-no-connection"),
    pytest.param("service", {"connection_id": "agent", "user_id": "not-a-uuid"}, id="service-bad-user"),
    pytest.param("service", {"connection_id": "agent", "organization_id": ""}, id="service-no-organization"),
]


@pytest.mark.parametrize("rpc", ["Heartbeat", "Disconnect"])
@pytest.mark.parametrize(("caller", "fields"), BAD_LEASES)
async def test_bad_lease_requests_are_invalid_and_change_no_presence(
    server: InProcessServer[pb_grpc.RealtimeServiceAsyncStub],
    tokens: TokenFactory,
    rpc: str,
    caller: str,
    fields: dict[str, str],
) -> None:
    org = Org.create(tokens)
    worker = org.employees[0]
    token = org.tokens[worker] if caller == "user" else tokens.service("ingest")
    named = {"user_id": worker, "organization_id": org.id} if caller == "service" else {}
    request_type = pb.HeartbeatRequest if rpc == "Heartbeat" else pb.DisconnectRequest
    if rpc == "Disconnect":  # something a wrongly accepted release could end
        await server.stub.Heartbeat(pb.HeartbeatRequest(connection_id="tab-1"), metadata=auth(org.tokens[worker]))
    before = await _online(server.stub, org)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(server.stub, rpc)(request_type(**{**named, **fields}), metadata=auth(token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await _online(server.stub, org) == before
