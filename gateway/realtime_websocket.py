"""The plain WebSocket endpoint, ``GET /ws`` (the contract: gateway/realtime.py)."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.cors import origin_admitted
from gateway.peers import Peers
from gateway.realtime_feed import Feed, FeedClosed, Frame, Outbox, ready_data
from gateway.settings import GatewaySettings

SUBPROTOCOL = "workpulse.v1"


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
    outbox.put(Frame("ready", ready_data(ready)))
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
