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
                got = [e.type for e in self.events]
                raise AssertionError(f"{what} not received within {timeout}s; got {len(got)}, last {got[-5:]}")
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


class WsListener:
    """A plain WebSocket client of the gateway's /ws, recording frames."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.recorder = Recorder()
        self.frames: list[dict[str, Any]] = []
        self.ready: dict[str, Any] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._ws: Any = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, *, subprotocols: list[str] | None = None, **kwargs: Any) -> WsListener:
        import websockets

        self._ws = await websockets.connect(self.url, subprotocols=subprotocols, open_timeout=10, **kwargs)  # type: ignore[arg-type]
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        import websockets

        try:
            async for raw in self._ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                if frame["event"] == "ready":
                    self.ready = frame["data"]
                    self.recorder.changed.set()
                elif frame["event"] in ("ping", "resync"):
                    self.recorder.changed.set()
                else:
                    assert frame["id"] == frame["data"]["id"]
                    # The on-connect snapshot is no stream entry: its id is null (recorded as "").
                    self.recorder.add(Received(frame["id"] or "", frame["event"], frame["data"]))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.close_reason = self._ws.close_reason or ""
            self.recorder.end(f"closed {self.close_code}")

    async def started(self, timeout: float = 10.0) -> WsListener:
        await self.recorder.wait(lambda r: self.ready is not None or r.ended is not None, timeout, "ready frame")
        if self.ready is None:
            raise AssertionError(f"closed before ready: {self.close_code} {self.close_reason}")
        return self

    async def closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        await self.recorder.wait(lambda r: r.ended is not None, timeout, "close")
        return self.close_code, self.close_reason

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class SioListener:
    """A python-socketio client, connected the way the original's clients connect."""

    def __init__(self, url: str, *types: str) -> None:
        import socketio

        self.url = url
        self.recorder = Recorder()
        self.errors: list[dict[str, Any]] = []
        self.client = socketio.AsyncClient(reconnection=False)
        for t in types:
            self.client.on(t, lambda data, t=t: self.recorder.add(Received(data.get("id") or "", t, data)))
        self.client.on("error", self._error)
        self.client.on("connect_error", self._error)
        self.client.on("disconnect", lambda *_: self.recorder.end("disconnected"))

    def _error(self, data: dict[str, Any]) -> None:
        self.errors.append(data)
        self.recorder.changed.set()

    async def connect(self, auth: dict[str, str]) -> SioListener:
        await self.client.connect(self.url, auth=auth, transports=["websocket"], wait_timeout=10)
        return self

    async def close(self) -> None:
        await self.client.disconnect()


async def polite_or_dropped(client: Any, transports: list[str]) -> None:
    """Ends a Socket.IO client's connection. Over polling, Engine.IO answers a client's close
    only at the next ping (25 s), so that connection is dropped rather than closed."""
    if transports == ["polling"]:
        await client.eio.disconnect(abort=True)
    else:
        await client.disconnect()
