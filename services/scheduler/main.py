"""Composition root of the scheduler: engines, peers, the job runner and its APScheduler
clock, the outbox relay and the gRPC server. Nothing connects at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scheduler.domain import JOBS, Thresholds
from services.scheduler.jobs import JobConfig, JobContext
from services.scheduler.mesh import GrpcPeers
from services.scheduler.runner import JobRunner
from services.scheduler.servicer import SchedulerServicer, mounted
from services.scheduler.use_cases import Reports
from workpulse import runtime
from workpulse.db import UnitOfWork, create_engine
from workpulse.grpc_client import channel
from workpulse.grpc_server import RunningServer, build_server, serve
from workpulse.outbox import EVENTS_TOPIC, OutboxRelay, StreamPublisher
from workpulse.postgres import MAINTENANCE_ROLE
from workpulse.redisconn import Keys, create_client
from workpulse.settings import GrpcServiceSettings, load

SCHEMA = "scheduler"
_ALIGNED = datetime(2000, 1, 1, tzinfo=UTC)

logger = logging.getLogger("workpulse.scheduler")


class Settings(GrpcServiceSettings):
    auth_addr: str = Field("127.0.0.1:50051", description="auth service (time zones of users)")
    sessions_addr: str = Field("127.0.0.1:50052", description="sessions service (work time, idle sessions)")
    ingest_addr: str = Field("127.0.0.1:50053", description="ingest service (activity totals, partitions)")
    scheduler_enabled: bool = Field(True, description="run the periodic jobs in this process")
    job_retries: int = Field(3, ge=0, le=10, description="retries of a failed run")
    job_backoff_seconds: float = Field(2.0, ge=0, description="first retry delay; doubles each retry")
    catch_up_hours: float = Field(48.0, ge=0, description="how far back missed runs are replayed")
    idle_minutes: int = Field(5, ge=1, le=1440, description="default idle threshold of organizations")
    overtime_hours: float = Field(9.0, gt=0, le=24, description="default overtime threshold")
    top_apps: int = Field(5, ge=0, le=50)
    summary_settle_minutes: int = Field(15, ge=0, le=720, description="wait after a local midnight before summarizing")
    partition_days_ahead: int = Field(7, ge=1, le=366, description="activity-log partitions created ahead")
    activity_retention_days: int = Field(0, ge=0, description="drop activity partitions older than this; 0: off")
    zone_cache_seconds: float = Field(300.0, ge=0)
    peer_timeout_seconds: float = Field(120.0, gt=0)


@dataclass
class Wiring:
    engine: AsyncEngine
    maintenance: AsyncEngine
    channels: list[grpc.aio.Channel]
    peers: GrpcPeers
    runner: JobRunner

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()
        await self.maintenance.dispose()
        await self.engine.dispose()


def wire(settings: Settings) -> Wiring:
    """Engines, peer channels and the job runner (shared by the server and the CLI)."""
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    maintenance = create_engine(settings.database_url, role=MAINTENANCE_ROLE, pool_size=4)
    identity = runtime.service_identity("scheduler", settings)
    channels = [
        channel(address, identity=identity, default_timeout=settings.peer_timeout_seconds)
        for address in (settings.auth_addr, settings.sessions_addr, settings.ingest_addr)
    ]
    peers = GrpcPeers(
        *channels, identity=identity, zone_ttl=settings.zone_cache_seconds, timeout=settings.peer_timeout_seconds
    )
    config = JobConfig(
        top_apps=settings.top_apps,
        partition_days_ahead=settings.partition_days_ahead,
        activity_retention_days=settings.activity_retention_days,
        summary_settle=timedelta(minutes=settings.summary_settle_minutes),
        defaults=Thresholds(settings.idle_minutes, settings.overtime_hours),
    )
    runner = JobRunner(
        maintenance,
        JobContext(UnitOfWork(maintenance), peers, config),
        retries=settings.job_retries,
        backoff_seconds=settings.job_backoff_seconds,
        catch_up_horizon=timedelta(hours=settings.catch_up_hours),
    )
    return Wiring(engine, maintenance, channels, peers, runner)


async def catch_up_at_start(runner: JobRunner) -> None:
    """Replays the runs missed while down. A failure (say, migrations not applied yet) is
    logged for the operator; the periodic jobs keep running and retry on their slots."""
    try:
        await runner.catch_up()
    except Exception:
        logger.exception("catch-up at start failed")


def periodic(runner: JobRunner) -> AsyncIOScheduler:
    """APScheduler fires each job at the start of its slots; the run itself is a task the
    runner tracks, so shutting APScheduler down never cancels a job halfway."""
    scheduler = AsyncIOScheduler(timezone=UTC)

    async def tick(name: str) -> None:
        task = runner.spawn(name)
        if task is not None:
            await asyncio.shield(task)

    for spec in JOBS.values():
        seconds = int(spec.period.total_seconds())
        scheduler.add_job(
            tick,
            IntervalTrigger(seconds=seconds, start_date=_ALIGNED, timezone=UTC),
            args=[spec.name],
            id=spec.name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=seconds,
        )
    return scheduler


async def build(settings: Settings) -> tuple[RunningServer, Callable[[], Awaitable[None]]]:
    wiring = wire(settings)
    redis = create_client(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    servicer = SchedulerServicer(Reports(UnitOfWork(wiring.engine), wiring.peers, settings.top_apps), wiring.runner)
    relay = OutboxRelay(
        wiring.maintenance,
        SCHEMA,
        {EVENTS_TOPIC: StreamPublisher(redis, keys, SCHEMA)},
        listen_url=settings.database_url,
    )
    relay_task = asyncio.create_task(relay.run(), name="scheduler-outbox-relay")
    try:
        running = await build_server(
            [mounted(servicer)],
            runtime.token_verifier(settings),
            host=settings.grpc_host,
            port=settings.grpc_port,
        )
    except BaseException:
        relay_task.cancel()
        raise
    scheduler = periodic(wiring.runner)
    catch_up: asyncio.Task[None] | None = None
    if settings.scheduler_enabled:
        scheduler.start()
        catch_up = asyncio.create_task(catch_up_at_start(wiring.runner), name="scheduler-catch-up")

    async def cleanup() -> None:
        if scheduler.running:
            scheduler.shutdown(wait=False)
        await wiring.runner.drain()
        if catch_up is not None:
            await catch_up
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task
        await redis.aclose()
        await wiring.close()

    return running, cleanup


def main() -> None:
    settings = load(Settings)
    runtime.start_process("scheduler", settings)

    async def run() -> None:
        running, cleanup = await build(settings)
        await serve(running, grace=settings.shutdown_grace_seconds, cleanup=cleanup)

    runtime.run(run())
