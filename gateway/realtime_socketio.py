"""The Socket.IO endpoint, path ``/socket.io`` (the contract: gateway/realtime.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import socketio
from starlette.applications import Starlette

from gateway.realtime_feed import CLOSE_UNAUTHENTICATED, QUEUE_CAPACITY, Feed, FeedClosed
from gateway.settings import GatewaySettings


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
