"""Live events for browsers: a plain WebSocket endpoint and a Socket.IO endpoint.

Both hold one realtime ``Subscribe`` stream per connection (gateway/realtime_feed.py);
the endpoints are gateway/realtime_websocket.py and gateway/realtime_socketio.py; this
module mounts them in front of the app. The client contract is docs/API.md.

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

import gc

import socketio
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.realtime_socketio import SocketIOEndpoint
from gateway.realtime_websocket import websocket_endpoint
from gateway.settings import GatewaySettings


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
