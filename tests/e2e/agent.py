"""A desktop agent as the tests (and the benchmark) drive it: streams batches to ingest,
keeps every batch until it is acknowledged, reconnects and resends what was not."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import grpc

from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc


def make_batches(
    session_id: str, *, events: int, per_batch: int, start: datetime, seconds: int = 5
) -> list[pb.StreamActivityRequest]:
    """``events`` events stamped one second apart from ``start``, alternating active and idle."""
    batches: list[pb.StreamActivityRequest] = []
    for first in range(0, events, per_batch):
        batch = pb.StreamActivityRequest(batch_id=uuid.uuid4().hex, session_id=session_id)
        for n in range(first, min(events, first + per_batch)):
            e = batch.events.add(
                activity_type=pb.ACTIVITY_TYPE_IDLE if n % 5 == 0 else pb.ACTIVITY_TYPE_ACTIVE,
                duration_seconds=seconds,
                app_name="editor",
                client_event_id=f"ev-{n}",
            )
            e.timestamp.FromDatetime(start + timedelta(milliseconds=n))
        batches.append(batch)
    return batches


def expected_totals(batches: list[pb.StreamActivityRequest]) -> tuple[int, int]:
    active = sum(e.duration_seconds for b in batches for e in b.events if e.activity_type == pb.ACTIVITY_TYPE_ACTIVE)
    idle = sum(e.duration_seconds for b in batches for e in b.events if e.activity_type == pb.ACTIVITY_TYPE_IDLE)
    return active, idle


@dataclass
class Agent:
    address: str
    token: str
    batches: list[pb.StreamActivityRequest]
    window: int = 8
    acked: dict[str, pb.StreamActivityResponse] = field(default_factory=dict)
    reconnects: int = 0
    failed_acks: int = 0

    @property
    def unacked(self) -> list[pb.StreamActivityRequest]:
        return [b for b in self.batches if b.batch_id not in self.acked]

    async def run(self, deadline_seconds: float = 60.0) -> None:
        """Streams until every batch is acknowledged, reconnecting after failures."""
        deadline = time.monotonic() + deadline_seconds
        while self.unacked:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.unacked)} batches never acknowledged")
            try:
                await self.stream_once()
            except grpc.aio.AioRpcError:
                self.reconnects += 1
                await asyncio.sleep(0.2)

    async def stream_once(self) -> None:
        """One connection: sends every unacknowledged batch (``window`` at a time) and reads
        the acks; a batch acked with an error is left for the next connection. Raises
        ``grpc.aio.AioRpcError`` when the stream breaks (no reconnect: see ``run``)."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            pending = self.unacked
            credit = asyncio.Semaphore(self.window)
            retry_later: list[pb.StreamActivityRequest] = []

            async def requests() -> AsyncIterator[pb.StreamActivityRequest]:
                for batch in pending:
                    await credit.acquire()
                    batch.agent_time.GetCurrentTime()  # the agent's clock, as sent (offset measured)
                    yield batch

            call = stub.StreamActivity(requests(), metadata=(("authorization", f"Bearer {self.token}"),))
            by_id = {b.batch_id: b for b in pending}
            # The request stream ends after the last batch; the server then ends its side
            # once every batch is acknowledged (a clean close, not a cancellation).
            async for ack in call:
                credit.release()
                if ack.status_code == 0:
                    self.acked[ack.batch_id] = ack
                else:
                    self.failed_acks += 1
                    retry_later.append(by_id[ack.batch_id])
            if retry_later:
                await asyncio.sleep(0.2)
