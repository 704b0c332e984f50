"""Test clients that record what a subscriber receives, and a way to publish events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import redis.asyncio as aioredis

from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc


@dataclass
class Received:
    id: str
    type: str
    data: dict[str, Any]


async def publish(client: aioredis.Redis, stream: str, event_type: str, org: str, data: dict[str, Any]) -> str:
    """Appends an entry exactly as the outbox relay's StreamPublisher does."""
    fields = {
        "type": event_type,
        "org": org,
        "service": "test",
        "ts": datetime.now(UTC).isoformat(),
        "data": json.dumps(data),
    }
    return str(await client.xadd(stream, fields))  # type: ignore[arg-type]


@dataclass
class Recorder:
    """What one subscriber received, with a way to wait for a condition on it."""

    events: list[Received] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    ended: BaseException | str | None = None

    def add(self, item: Received) -> None:
        self.events.append(item)
        self.changed.set()

    def end(self, why: BaseException | str) -> None:
        self.ended = why
        self.changed.set()

    def of_type(self, *types: str) -> list[Received]:
        return [e for e in self.events if e.type in types]

    async def wait(self, check: Callable[[Recorder], bool], timeout: float = 10.0, what: str = "events") -> None:
        deadline = time.monotonic() + timeout
        while not check(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{what} not received within {timeout}s; got {[e.type for e in self.events]}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                continue


class GrpcListener:
    """A Subscribe stream read by a task into a Recorder."""

    def __init__(self, channel: grpc.aio.Channel, token: str, request: pb.SubscribeRequest) -> None:
        self.recorder = Recorder()
        self.ready: pb.Ready | None = None
        self.resyncs: list[pb.Resync] = []
        self.keepalives = 0
        self._call = pb_grpc.RealtimeServiceStub(channel).Subscribe(
            request, metadata=[("authorization", f"Bearer {token}")]
        )
        self._got_ready = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for reply in self._call:
                kind = reply.WhichOneof("kind")
                if kind == "ready":
                    self.ready = reply.ready
                    self._got_ready.set()
                elif kind == "events":
                    for e in reply.events.events:
                        self.recorder.add(Received(e.id, e.type, json.loads(e.data_json)))
                elif kind == "resync":
                    self.resyncs.append(reply.resync)
                    self.recorder.changed.set()
                else:
                    self.keepalives += 1
                    self.recorder.changed.set()
            self.recorder.end("completed")
        except grpc.aio.AioRpcError as exc:
            self.recorder.end(exc)
        finally:
            self._got_ready.set()

    async def started(self, timeout: float = 10.0) -> GrpcListener:
        await asyncio.wait_for(self._got_ready.wait(), timeout)
        if self.ready is None:
            raise AssertionError(f"stream ended before ready: {self.recorder.ended!r}")
        return self

    async def close(self) -> None:
        self._call.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
