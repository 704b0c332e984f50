"""A desktop agent's activity stream held open (the member is online while it is), with
one batch sent and acknowledged at a time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc

from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc


class HeldStream:
    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self.token = token
        self._queue: asyncio.Queue[pb.StreamActivityRequest | None] = asyncio.Queue()

    async def __aenter__(self) -> HeldStream:
        self._channel = grpc.aio.insecure_channel(self.address)
        stub = ingest_pb2_grpc.IngestServiceStub(self._channel)
        self._call = stub.StreamActivity(self._requests(), metadata=(("authorization", f"Bearer {self.token}"),))
        return self

    async def _requests(self) -> AsyncIterator[pb.StreamActivityRequest]:
        while (batch := await self._queue.get()) is not None:
            yield batch

    async def send(self, session_id: str, *, active: int = 0, idle: int = 0, app: str = "editor") -> None:
        batch = pb.StreamActivityRequest(batch_id=uuid.uuid4().hex, session_id=session_id)
        batch.agent_time.GetCurrentTime()
        for kind, seconds in ((pb.ACTIVITY_TYPE_ACTIVE, active), (pb.ACTIVITY_TYPE_IDLE, idle)):
            if seconds:
                event = batch.events.add(
                    activity_type=kind, duration_seconds=seconds, app_name=app, client_event_id=uuid.uuid4().hex
                )
                event.timestamp.FromDatetime(datetime.now(UTC))
        await self._queue.put(batch)
        ack = await asyncio.wait_for(self._call.read(), 10)
        assert isinstance(ack, pb.StreamActivityResponse) and ack.status_code == 0, ack

    async def __aexit__(self, *exc: object) -> None:
        await self._queue.put(None)
        self._call.cancel()
        await self._channel.close()
