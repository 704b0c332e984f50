"""Live events for browsers: a plain WebSocket endpoint and a Socket.IO endpoint.

Both hold one realtime ``Subscribe`` stream per connection, made with the user's own
token (realtime scopes it and counts it for presence), and survive the loss of a realtime
replica by re-subscribing after the last event id with the same connection id, so the
user neither misses events nor flaps offline. The client contract is docs/API.md.

Plain WebSocket, ``GET /ws``:
  - token: ``Authorization: Bearer <token>`` (native clients), or the subprotocols
    ``["workpulse.v1", "bearer.<token>"]`` (browsers; the server answers ``workpulse.v1``),
    or ``?token=<token>`` (simplest, but query strings may end up in proxy logs);
  - ``?after=<event id>`` resumes after that event (missed events first, in order, once);
  - frames are JSON ``{"event", "data", "id"}``: ``ready``, the on-connect snapshot
    (gateway/realtime_snapshot.py), then events (``data`` is the payload plus ``id`` and
    ``timestamp``), ``ping`` keepalives when idle, ``resync`` when events were lost;
  - a refused or ended connection is closed with 4401 (missing, invalid or expired
    token), 4400 (bad ``after``) or 4503 (realtime unavailable), the reason in the close
    frame.

Socket.IO, path ``/socket.io``: ``io(url, {auth: {token, lastEventId?}})`` receives the
snapshot, then each event under its name with the same ``data``; a refused connection gets
``connect_error`` with the reason; token expiry emits ``error`` then disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import socketio
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.cors import origin_admitted
from gateway.errors import HTTPError
from gateway.peers import Peers
from gateway.realtime_snapshot import on_connect, user_metadata
from gateway.settings import GatewaySettings
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc

logger = logging.getLogger("workpulse.gateway.realtime")

SUBPROTOCOL = "workpulse.v1"
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


def _token_of(ws: WebSocket) -> tuple[str, str | None]:
    """The bearer token and the subprotocol to answer with (see the module docstring)."""
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    accept = SUBPROTOCOL if SUBPROTOCOL in offered else None
    for p in offered:
        if p.startswith("bearer."):
            return p[len("bearer.") :], accept
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), accept
    return ws.query_params.get("token", ""), accept


async def websocket_endpoint(ws: WebSocket) -> None:
    settings: GatewaySettings = ws.app.state.settings
    if not origin_admitted(settings.allowed_origins(), ws.headers.get("origin")):
        await ws.close(1008)  # before accepting: the handshake is answered 403
        return
    token, subprotocol = _token_of(ws)
    peers: Peers = ws.app.state.peers
    client = ws.client.host if ws.client else ""
    feed = Feed(peers, token, ws.query_params.get("after", ""), client)
    try:
        ready = await feed.open()
    except FeedClosed as exc:
        feed.close()
        await ws.accept(subprotocol)
        await ws.close(exc.code, exc.reason)
        return
    await ws.accept(subprotocol)
    outbox = Outbox()
    outbox.put(Frame("ready", _ready_data(ready)))
    reason: tuple[int, str] = (1000, "")

    async def pump() -> None:
        nonlocal reason
        for snapshot in await feed.snapshot():
            outbox.put(snapshot)  # after ready, before any event (replayed or live)
        try:
            async for frame in feed.frames():
                outbox.put(frame)
        except FeedClosed as exc:
            reason = (exc.code, exc.reason)

    async def write() -> None:
        while True:
            await ws.send_text((await outbox.get()).text())

    async def read() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await ws.receive_text()

    tasks = [asyncio.create_task(t()) for t in (pump, write, read)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        feed.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await ws.close(*reason)


def _ready_data(ready: pb.Ready) -> dict[str, Any]:
    return {
        "userId": ready.user_id,
        "organizationId": ready.organization_id,
        "role": ready.role,
        "connectionId": ready.connection_id,
        "tokenExpiresAt": ready.token_expires_at.ToDatetime(tzinfo=UTC).isoformat(),
    }


class SocketIOEndpoint:
    """python-socketio's server speaking the original's protocol, fed by realtime."""

    def __init__(self, app: Starlette, settings: GatewaySettings) -> None:
        origins = settings.allowed_origins()
        self.app = app
        # The rule of gateway.cors.origin_admitted: with a list, Engine.IO refuses any other
        # Origin (both transports); without one, no check ([]; None would mean same-origin).
        self.sio = socketio.AsyncServer(
            async_mode="asgi", cors_allowed_origins="*" if "*" in origins else origins, logger=False
        )
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self._pumps: dict[str, asyncio.Task[None]] = {}

    async def _connect(self, sid: str, environ: Mapping[str, Any], auth: object = None) -> None:
        given = auth if isinstance(auth, dict) else {}
        token = str(given.get("token") or "")
        if not token:
            scheme, _, raw = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
            token = raw.strip() if scheme.lower() == "bearer" else ""
        after = str(given.get("lastEventId") or "")
        feed = Feed(self.app.state.peers, token, after, str(environ.get("REMOTE_ADDR", "")))
        try:
            await feed.open()
        except FeedClosed as exc:
            feed.close()
            raise socketio.exceptions.ConnectionRefusedError(exc.reason) from None
        self._pumps[sid] = asyncio.create_task(self._pump(sid, feed))

    async def _pump(self, sid: str, feed: Feed) -> None:
        behind = False
        last_sent: str | None = None
        try:
            for snapshot in await feed.snapshot():
                await self.sio.emit(snapshot.event, snapshot.data, to=sid)
            async for frame in feed.frames():
                if frame.event == "ping":
                    continue
                # Engine.IO queues without bound: past our bound, drop and later ask for a resync.
                if self._backlog(sid) >= QUEUE_CAPACITY:
                    behind = True
                    continue
                if behind:
                    behind = False
                    resync = {"reason": "client fell too far behind", "lastId": last_sent}
                    await self.sio.emit("resync", resync, to=sid)
                await self.sio.emit(frame.event, frame.data, to=sid)
                last_sent = frame.id or last_sent
        except FeedClosed as exc:
            status = 401 if exc.code == CLOSE_UNAUTHENTICATED else 503
            await self.sio.emit("error", {"statusCode": status, "message": exc.reason}, to=sid)
            await self.sio.disconnect(sid)
        finally:
            feed.close()

    def _backlog(self, sid: str) -> int:
        """Packets Engine.IO holds for this client and has not sent yet."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        found = self.sio.eio.sockets.get(eio_sid) if eio_sid else None
        return int(found.queue.qsize()) if found is not None else 0

    async def _disconnect(self, sid: str, *args: object) -> None:
        task = self._pumps.pop(sid, None)
        if task is not None:
            task.cancel()


def tune_gc() -> None:
    """For the gateway process, once its app is built (an app embedded in a test process
    leaves its host's GC alone). What is alive then lives as long as the process: freezing
    it out of the cyclic GC, and running full collections a hundred times less often, keeps
    their pauses, which stall every live connection at once, out of delivery."""
    gc.freeze()
    gc.set_threshold(700, 10, 1000)


def mount(app: Starlette, settings: GatewaySettings) -> ASGIApp:
    """Serves ``/ws`` and ``/socket.io`` in front of ``app``, which keeps its lifespan and
    everything else. Live connections bypass the HTTP middleware: they have no body, and
    per-message tracing spans would cost more than the messages."""
    endpoint = SocketIOEndpoint(app, settings)
    socketio_app = socketio.ASGIApp(endpoint.sio, other_asgi_app=app, socketio_path="socket.io")
    plain = WebSocketRoute("/ws", websocket_endpoint)

    async def live(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await plain.handle({**scope, "app": app}, receive, send)
        else:
            await socketio_app(scope, receive, send)

    return live
