"""The gateway application factory; tests call ``create_app`` with their own settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from gateway import realtime
from gateway.callers import on_http_error
from gateway.cors import StandardCors
from gateway.dashboard import dashboard_routes
from gateway.errors import HTTPError, on_starlette_error, on_unexpected
from gateway.health import health
from gateway.idempotency import IdempotencyKeys
from gateway.limits import BodySizeLimit
from gateway.openapi import build_document
from gateway.peers import Peers
from gateway.routes import all_routes
from gateway.settings import GatewaySettings
from workpulse import redisconn, runtime, telemetry


def create_app(settings: GatewaySettings) -> ASGIApp:
    routes: list[BaseRoute] = [Route("/health", health, methods=["GET"]), *all_routes()]
    document = build_document(routes)

    async def openapi(_: Request) -> JSONResponse:
        return JSONResponse(document)

    routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    routes[:0] = dashboard_routes()  # the managers' dashboard (issue 13): first, for browsers' navigations

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.redis = redisconn.create_client(settings.redis_url)
        app.state.keys = redisconn.Keys(settings.redis_prefix)
        app.state.verifier = runtime.token_verifier(settings)
        app.state.peers = Peers(
            settings.peer_addresses(), runtime.service_identity("gateway", settings), settings.rpc_timeout_seconds
        )
        try:
            yield
        finally:
            await app.state.peers.close()
            await app.state.redis.aclose()

    middleware = [
        Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
        # Inside the size limit: a replayed answer never needs a body larger than allowed.
        Middleware(IdempotencyKeys),
        Middleware(StandardCors, origins=settings.allowed_origins()),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            HTTPError: on_http_error,
            HTTPException: on_starlette_error,
            Exception: on_unexpected,
        },
    )
    if telemetry.enabled():
        from opentelemetry.instrumentation.starlette import StarletteInstrumentor

        StarletteInstrumentor.instrument_app(app)
    return realtime.mount(app, settings)  # realtime (issue 4): /ws and Socket.IO at /socket.io
