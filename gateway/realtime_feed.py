"""One browser connection's realtime subscription (``Feed``), its bounded send queue
(``Outbox``) and the frames both endpoints send (gateway/realtime.py has the contract).

A feed holds one realtime ``Subscribe`` stream made with the user's own token (realtime
scopes it and counts it for presence) and survives the loss of a realtime replica by
re-subscribing after the last event id with the same connection id, so the user neither
misses events nor flaps offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc

from gateway.errors import HTTPError
from gateway.peers import Peers
from gateway.realtime_snapshot import on_connect, user_metadata
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_UNAVAILABLE = 4503
QUEUE_CAPACITY = 256
RESUBSCRIBE_SECONDS = 10.0
OPEN_TIMEOUT_SECONDS = 10.0
_RETRIABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class Frame:
    event: str
    data: dict[str, Any]
    id: str | None = None

    @functools.cached_property
    def json(self) -> str:
        return json.dumps({"event": self.event, "data": self.data, "id": self.id})

    def text(self) -> str:
        return self.json


def event_frame(e: pb.Event) -> Frame:
    return _frame_of(e.id, e.type, e.timestamp, e.data_json)


@functools.lru_cache(maxsize=4096)
def _frame_of(event_id: str, event_type: str, timestamp: str, data_json: str) -> Frame:
    """Parsed and rendered once per event, however many connections of this gateway get it."""
    data = json.loads(data_json or "{}")
    if not isinstance(data, dict):
        data = {"value": data}
    data.setdefault("id", event_id)
    data.setdefault("timestamp", timestamp)
    return Frame(event_type, data, event_id)


class FeedClosed(Exception):
    """The subscription cannot go on; ``code`` is the WebSocket close code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


_CLOSE_OF = {
    grpc.StatusCode.UNAUTHENTICATED: CLOSE_UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: CLOSE_UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT: CLOSE_BAD_REQUEST,
}


def _closed(exc: grpc.aio.AioRpcError) -> FeedClosed:
    code = _CLOSE_OF.get(exc.code(), CLOSE_UNAVAILABLE)
    reason = exc.details() if code != CLOSE_UNAVAILABLE else "realtime service unavailable"
    return FeedClosed(code, reason or exc.code().name.lower())


@dataclass
class Feed:
    """One browser connection's realtime subscription, resumed across realtime failures."""

    peers: Peers
    token: str
    after_id: str = ""
    client_address: str = ""
    connection_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ready: pb.Ready | None = None
    _call: Any = None

    def _subscribe(self) -> Any:
        try:
            stub = self.peers.stub("realtime", pb_grpc.RealtimeServiceStub)
        except HTTPError as exc:
            raise FeedClosed(CLOSE_UNAVAILABLE, exc.message) from None
        metadata = user_metadata(self.peers, self.token, self.client_address)
        # The stream lives until the token expires (realtime ends it then); a day at most.
        expires = self.ready.token_expires_at.seconds if self.ready is not None else time.time() + 86400
        request = pb.SubscribeRequest(after_id=self.after_id, track_presence=True, connection_id=self.connection_id)
        return stub.Subscribe(request, metadata=metadata, timeout=max(5.0, expires - time.time() + 30))

    async def open(self) -> pb.Ready:
        """Subscribes and waits for realtime's ``ready``; raises :class:`FeedClosed` when refused."""
        if not self.token:
            raise FeedClosed(CLOSE_UNAUTHENTICATED, "missing bearer token")
        self._call = self._subscribe()
        try:
            first = await asyncio.wait_for(self._call.read(), OPEN_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            raise _closed(exc) from None
        except TimeoutError:
            raise FeedClosed(CLOSE_UNAVAILABLE, "realtime service unavailable") from None
        if not isinstance(first, pb.SubscribeResponse) or first.WhichOneof("kind") != "ready":
            raise FeedClosed(CLOSE_UNAVAILABLE, "realtime service unavailable")
        self.ready = first.ready
        return first.ready

    async def snapshot(self) -> list[Frame]:
        """The on-connect snapshot (gateway/realtime_snapshot.py), to send before any event."""
        user = self.ready.user_id if self.ready is not None else ""
        found = await on_connect(self.peers, self.token, self.client_address, user)
        return [Frame(event, data) for event, data in found]

    async def frames(self) -> AsyncIterator[Frame]:
        """Events, keepalives and resyncs until the token expires or realtime stays down."""
        down_since: float | None = None
        while True:
            try:
                while isinstance(reply := await self._call.read(), pb.SubscribeResponse):
                    down_since = None
                    kind = reply.WhichOneof("kind")
                    if kind == "events":
                        for e in reply.events.events:
                            self.after_id = e.id
                            yield event_frame(e)
                    elif kind == "resync":
                        yield Frame("resync", {"reason": reply.resync.reason, "lastId": reply.resync.last_id})
                    elif kind == "keepalive":
                        yield Frame("ping", {"timestamp": _now()})
                # The stream completed (realtime shutting down, or it dropped us as too slow).
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRIABLE:
                    raise _closed(exc) from None
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since > RESUBSCRIBE_SECONDS:
                raise FeedClosed(CLOSE_UNAVAILABLE, "realtime service unavailable")
            await asyncio.sleep(0.2)
            await self._resubscribe()

    async def _resubscribe(self) -> None:
        self._call.cancel()
        self._call = self._subscribe()
        with contextlib.suppress(grpc.aio.AioRpcError, TimeoutError):
            first = await asyncio.wait_for(self._call.read(), OPEN_TIMEOUT_SECONDS)
            if isinstance(first, pb.SubscribeResponse) and first.WhichOneof("kind") == "ready":
                return
        # The next read fails again and the retry loop above decides.

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()


class Outbox:
    """A connection's bounded send queue: when the client falls behind, queued events are
    dropped and replaced by one ``resync`` frame, so a slow client never slows others."""

    def __init__(self, capacity: int = QUEUE_CAPACITY) -> None:
        self.capacity = capacity
        self.dropped = 0
        self.wake = asyncio.Event()
        self.last_sent: str | None = None  # the id of the last event handed to the client
        self._frames: deque[Frame] = deque()

    def put(self, frame: Frame) -> None:
        if len(self._frames) >= self.capacity:
            self.dropped += len(self._frames)
            self._frames.clear()
            # Reconnecting with ?after=<lastId> replays what was dropped (while retained).
            self._frames.append(Frame("resync", {"reason": "client fell too far behind", "lastId": self.last_sent}))
        self._frames.append(frame)
        self.wake.set()

    async def get(self) -> Frame:
        while not self._frames:
            self.wake.clear()
            await self.wake.wait()
        frame = self._frames.popleft()
        if frame.id is not None:
            self.last_sent = frame.id
        return frame


def ready_data(ready: pb.Ready) -> dict[str, Any]:
    return {
        "userId": ready.user_id,
        "organizationId": ready.organization_id,
        "role": ready.role,
        "connectionId": ready.connection_id,
        "tokenExpiresAt": ready.token_expires_at.ToDatetime(tzinfo=UTC).isoformat(),
    }
