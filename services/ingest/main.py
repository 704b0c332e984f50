"""Composition root of the ingest service: engines, Redis, the sessions peer, the group
writer, hand-off redelivery, the events relay and the gRPC server. Nothing connects at
import time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from pydantic import Field
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.batch_store import ActivityStore
from services.ingest.domain import MAX_CLOCK_SKEW
from services.ingest.handoff import TotalsHandoff
from services.ingest.limits import RequestBudget
from services.ingest.partitions import ensure_partitions
from services.ingest.policy_cache import AgentPolicyCache
from services.ingest.policy_use_cases import AgentPolicies, stored_policies
from services.ingest.presence import AgentPresence
from services.ingest.reporting_servicer import reporting_servicer
from services.ingest.repository import SCHEMA
from services.ingest.servicer import SERVICE_METHODS, SERVICE_NAME, IngestServicer
from services.ingest.sessions_peer import SessionsPeer
from services.ingest.use_cases import Ingest
from services.ingest.writer import ActivityWriter
from workpulse import runtime
from workpulse.db import UnitOfWork, create_engine
from workpulse.grpc_client import channel
from workpulse.grpc_server import RunningServer, Servicer, build_server, serve
from workpulse.ingest.v1 import ingest_pb2_grpc
from workpulse.outbox import EVENTS_TOPIC, OutboxRelay, StreamPublisher
from workpulse.postgres import MAINTENANCE_ROLE
from workpulse.ratelimit import BufferedRateLimiter
from workpulse.realtime.v1 import realtime_pb2_grpc
from workpulse.redisconn import Keys, create_client
from workpulse.sessions.v1 import sessions_pb2_grpc
from workpulse.settings import GrpcServiceSettings, load


class Settings(GrpcServiceSettings):
    sessions_addr: str = Field(description="host:port of the sessions service")
    realtime_addr: str | None = Field(None, description="realtime service; agent streams hold presence there")
    ingest_clock_skew_seconds: float = Field(
        5.0,
        ge=0,
        le=MAX_CLOCK_SKEW.total_seconds(),
        description="allowance for the clocks of clients that do not send theirs (REST, batches): how far an "
        "event may be stamped in the future or before its session's start; streams measure their agent's offset",
    )
    ingest_requests_per_minute: int = Field(6000, ge=1, description="per-user budget of activity requests/batches")
    ingest_stream_max_in_flight: int = Field(4, ge=1, le=64, description="unacknowledged batches read per stream")
    ingest_max_concurrent_writes: int = Field(
        4, ge=1, le=64, description="concurrent group commits in the process (fewer: larger shared commits)"
    )
    ingest_redeliver_after_seconds: float = Field(3.0, gt=0, description="age of an unconfirmed hand-off to resend")
    ingest_events_poll_seconds: float = Field(
        0.25, gt=0, le=5, description="how often ACTIVITY_RECORDED events are relayed (batched, no per-write wake-up)"
    )
    ingest_outbox_keep_hours: int = Field(24, ge=1, description="how long confirmed outbox rows are kept")
    ingest_outbox_purge_interval_seconds: float = Field(3600.0, gt=0, description="how often they are purged")
    ingest_partition_days_ahead: int = Field(7, ge=1, le=366, description="daily partitions ensured at start-up")
    ingest_policy_cache_seconds: float = Field(
        3.0,
        ge=0,
        le=60,
        description="how long a replica keeps an organization's agent policy (stream acks' version, the "
        "server-side drop of uncollected titles and URLs); replicas converge on a change within it",
    )


async def _ensure_partitions_at_start(maintenance: AsyncEngine, days_ahead: int, attempts: int = 5) -> None:
    """Today's and the coming days' partitions (the scheduler keeps extending them); a
    database that is briefly unreachable at start-up is retried before giving up."""
    today = datetime.now(UTC).date()
    for n in range(attempts):
        try:
            await ensure_partitions(maintenance, today - timedelta(days=1), today + timedelta(days=days_ahead))
            return
        except OperationalError:
            if n == attempts - 1:
                raise
            await asyncio.sleep(0.5 * 2**n)


def contributed_servicers(maintenance: AsyncEngine) -> list[Servicer]:
    """Servicers other modules of this service add to the same server (cross-tenant ones
    get the maintenance engine). The scheduler's reporting servicer registers here."""
    return [reporting_servicer(maintenance)]


async def build(settings: Settings) -> tuple[RunningServer, Callable[[], Awaitable[None]]]:
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    maintenance = create_engine(settings.database_url, role=MAINTENANCE_ROLE, pool_size=3)
    await _ensure_partitions_at_start(maintenance, settings.ingest_partition_days_ahead)
    redis = create_client(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    sessions_channel = channel(settings.sessions_addr, identity=runtime.service_identity("ingest", settings))
    # A stop is enforced by the store under a lock (ActivityStore), not by cached windows:
    # an active one is re-read every few seconds only to refuse stopped sessions early.
    sessions = SessionsPeer(sessions_pb2_grpc.SessionsServiceStub(sessions_channel), active_ttl=5.0)
    uow = UnitOfWork(engine)
    handoff = TotalsHandoff(uow, maintenance, sessions, redeliver_after_seconds=settings.ingest_redeliver_after_seconds)
    store = ActivityStore(uow)
    writer = ActivityWriter(store, handoff, max_concurrent=settings.ingest_max_concurrent_writes)
    # Counted in memory, reconciled with Redis in the background: no round trip per request.
    limiter = BufferedRateLimiter(redis)
    policies = AgentPolicies(
        uow, AgentPolicyCache(stored_policies(uow), ttl_seconds=settings.ingest_policy_cache_seconds)
    )
    ingest = Ingest(
        sessions=sessions,
        writer=writer,
        budget=RequestBudget(limiter, keys, requests_per_minute=settings.ingest_requests_per_minute),
        bounds=store,
        policies=policies.cache,
        clock_skew=timedelta(seconds=settings.ingest_clock_skew_seconds),
    )
    realtime_channel = (
        channel(settings.realtime_addr, identity=runtime.service_identity("ingest", settings))
        if settings.realtime_addr
        else None
    )
    presence = AgentPresence(realtime_pb2_grpc.RealtimeServiceStub(realtime_channel) if realtime_channel else None)
    servicer = IngestServicer(ingest, presence, policies, max_in_flight=settings.ingest_stream_max_in_flight)
    add = ingest_pb2_grpc.add_IngestServiceServicer_to_server
    servicers = [
        Servicer(SERVICE_NAME, lambda server: add(servicer, server), service_methods=SERVICE_METHODS),
        *contributed_servicers(maintenance),
    ]
    relay = OutboxRelay(
        maintenance,
        SCHEMA,
        {EVENTS_TOPIC: StreamPublisher(redis, keys, SCHEMA)},
        listen_url=settings.database_url,
        poll_seconds=settings.ingest_events_poll_seconds,
    )
    tasks = [
        asyncio.create_task(relay.run(), name="ingest-outbox-relay"),
        asyncio.create_task(limiter.run(), name="ingest-ratelimit-flush"),
        asyncio.create_task(handoff.run_redelivery(), name="ingest-handoff-redelivery"),
        asyncio.create_task(handoff.run_marker(), name="ingest-handoff-marker"),
        asyncio.create_task(
            handoff.run_purge(settings.ingest_outbox_purge_interval_seconds, settings.ingest_outbox_keep_hours),
            name="ingest-outbox-purge",
        ),
    ]

    async def cleanup() -> None:
        await writer.close()
        await runtime.stop_tasks(tasks)
        await limiter.close()
        await handoff.close()
        await sessions_channel.close()
        if realtime_channel is not None:
            await realtime_channel.close()
        await redis.aclose()
        await maintenance.dispose()
        await engine.dispose()

    try:
        running = await build_server(
            servicers, runtime.token_verifier(settings), host=settings.grpc_host, port=settings.grpc_port
        )
    except BaseException:
        await cleanup()
        raise
    return running, cleanup


def main() -> None:
    settings = load(Settings)
    runtime.start_process("ingest", settings)

    async def run() -> None:
        running, cleanup = await build(settings)
        await serve(running, grace=settings.shutdown_grace_seconds, cleanup=cleanup)

    runtime.run(run())
