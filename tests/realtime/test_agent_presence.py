"""A desktop agent's open activity stream (to ingest) keeps its user online; closing it
takes the user offline after the reconnect grace period. Whole mesh, real processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc

from tests.support import Mesh, TokenFactory, eventually
from workpulse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from workpulse.realtime.v1 import realtime_pb2, realtime_pb2_grpc


async def test_agent_stream_holds_presence_while_open(mesh: Mesh, tokens: TokenFactory) -> None:
    org, employee, manager = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    agent_token = tokens.user(org, employee, "employee")
    manager_md = [("authorization", f"Bearer {tokens.user(org, manager, 'manager')}")]
    realtime_channel = grpc.aio.insecure_channel(mesh.address("realtime"))
    ingest_channel = grpc.aio.insecure_channel(mesh.address("ingest"))
    realtime = realtime_pb2_grpc.RealtimeServiceStub(realtime_channel)

    async def online() -> bool:
        reply = await realtime.GetPresence(realtime_pb2.GetPresenceRequest(), metadata=manager_md, timeout=5)
        return any(u.user_id == employee for u in reply.users)

    assert not await online()
    closed = asyncio.Event()

    async def batches() -> AsyncIterator[ingest_pb2.StreamActivityRequest]:
        await closed.wait()
        return
        yield  # an async generator that sends nothing until the agent closes

    stream = ingest_pb2_grpc.IngestServiceStub(ingest_channel).StreamActivity(
        batches(), metadata=[("authorization", f"Bearer {agent_token}")]
    )
    try:
        await eventually(online, timeout=10, what="agent's user online")
    finally:
        closed.set()
        async for _ in stream:
            pass

    async def offline() -> bool:
        return not await online()

    await eventually(offline, timeout=20, what="agent's user offline after the stream closed")
    await realtime_channel.close()
    await ingest_channel.close()
