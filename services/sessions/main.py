"""Composition root of the sessions service: wires engines, Redis, the outbox relay and
the gRPC server. Nothing connects at import time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions import housekeeping
from services.sessions.ingest_peer import IngestWindows
from services.sessions.limits import RequestBudget
from services.sessions.reporting_servicer import reporting_servicer
from services.sessions.servicer import SERVICE_NAME, SessionsServicer
from workpulse import runtime
from workpulse.db import UnitOfWork, create_engine
from workpulse.grpc_client import channel
from workpulse.grpc_server import RunningServer, Servicer, build_server, serve
from workpulse.ingest.v1 import ingest_pb2_grpc
from workpulse.outbox import EVENTS_TOPIC, OutboxRelay, StreamPublisher
from workpulse.postgres import MAINTENANCE_ROLE
from workpulse.ratelimit import BufferedRateLimiter
from workpulse.redisconn import Keys, create_client
from workpulse.sessions.v1 import sessions_pb2_grpc
from workpulse.settings import GrpcServiceSettings, load

SCHEMA = "sessions"


class Settings(GrpcServiceSettings):
    session_reads_per_minute: int = Field(3000, ge=1, description="per-user budget of session/project reads")
    session_writes_per_minute: int = Field(600, ge=1, description="per-user budget of starts, stops, project edits")
    applied_batch_retention_days: int = Field(30, ge=1, description="how long ApplyActivity idempotency keys are kept")
    housekeeping_interval_seconds: float = Field(3600.0, gt=0, description="how often old keys and events are purged")
    ingest_addr: str | None = Field(
        None, description="ingest service: a stop closes the session's activity window there (unset: no ingest)"
    )


def contributed_servicers(maintenance: AsyncEngine) -> list[Servicer]:
    """Servicers other modules of this service add to the same server (cross-tenant ones
    get the maintenance engine). The scheduler's reporting servicer registers here."""
    return [reporting_servicer(maintenance)]


async def build(settings: Settings) -> tuple[RunningServer, Callable[[], Awaitable[None]]]:
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    maintenance = create_engine(settings.database_url, role=MAINTENANCE_ROLE, pool_size=4)
    redis = create_client(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    # Counted in memory, reconciled with Redis in the background: no round trip per request.
    limiter = BufferedRateLimiter(redis)
    budget = RequestBudget(
        limiter,
        keys,
        reads_per_minute=settings.session_reads_per_minute,
        writes_per_minute=settings.session_writes_per_minute,
    )
    ingest_channel = (
        channel(settings.ingest_addr, identity=runtime.service_identity("sessions", settings))
        if settings.ingest_addr
        else None
    )
    windows = IngestWindows(ingest_pb2_grpc.IngestServiceStub(ingest_channel)) if ingest_channel else None
    servicer = SessionsServicer(UnitOfWork(engine), budget, windows)
    add = sessions_pb2_grpc.add_SessionsServiceServicer_to_server
    servicers = [
        Servicer(
            SERVICE_NAME,
            lambda server: add(servicer, server),
            service_methods=("ApplyActivity", "ApplyActivityBatch"),
        ),
        *contributed_servicers(maintenance),
    ]
    relay = OutboxRelay(
        maintenance, SCHEMA, {EVENTS_TOPIC: StreamPublisher(redis, keys, SCHEMA)}, listen_url=settings.database_url
    )
    background = [
        asyncio.create_task(relay.run(), name="sessions-outbox-relay"),
        asyncio.create_task(limiter.run(), name="sessions-ratelimit-flush"),
        asyncio.create_task(
            housekeeping.run(
                maintenance,
                retention_days=settings.applied_batch_retention_days,
                interval_seconds=settings.housekeeping_interval_seconds,
            ),
            name="sessions-housekeeping",
        ),
    ]

    async def stop_background() -> None:
        await runtime.stop_tasks(background)
        await limiter.close()

    try:
        running = await build_server(
            servicers, runtime.token_verifier(settings), host=settings.grpc_host, port=settings.grpc_port
        )
    except BaseException:
        await stop_background()
        raise

    async def cleanup() -> None:
        await stop_background()
        if ingest_channel is not None:
            await ingest_channel.close()
        await redis.aclose()
        await maintenance.dispose()
        await engine.dispose()

    return running, cleanup


def main() -> None:
    settings = load(Settings)
    runtime.start_process("sessions", settings)

    async def run() -> None:
        running, cleanup = await build(settings)
        await serve(running, grace=settings.shutdown_grace_seconds, cleanup=cleanup)

    runtime.run(run())
