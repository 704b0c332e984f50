"""Composition root of the realtime service."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable

import grpc
from pydantic import Field

from services.realtime.activity import ActivityStore
from services.realtime.domain import DEFAULT_AGENT_SILENCE_SECONDS, MAX_AGENT_SILENCE_SECONDS
from services.realtime.hub import EventHub
from services.realtime.presence import PresenceStore, PresenceTracker
from services.realtime.servicer import RealtimeServicer
from services.realtime.silence import AgentSilence
from services.realtime.stream import EventStream
from services.realtime.use_cases import Realtime
from workpulse import redisconn, runtime
from workpulse.grpc_server import RunningServer, Servicer, build_server, serve
from workpulse.realtime.v1 import realtime_pb2_grpc
from workpulse.redisconn import raise_if_cancelled
from workpulse.settings import GrpcServiceSettings, load

logger = logging.getLogger("workpulse.realtime.retention")

SERVICE_NAME = "workpulse.realtime.v1.RealtimeService"
# Young collections as usual; full collections (the long pauses) a hundred times rarer.
GC_THRESHOLDS = (700, 10, 1000)


class Settings(GrpcServiceSettings):
    presence_lease_seconds: float = Field(
        15.0, gt=0, description="a connection's presence lapses this long after its heartbeat"
    )
    presence_heartbeat_seconds: float = Field(5.0, gt=0, description="how often live connections renew their lease")
    presence_grace_seconds: float = Field(5.0, ge=0, description="a reconnect within this time causes no flap")
    presence_sweep_seconds: float = Field(1.0, gt=0, description="how often lapsed leases are expired")
    stream_keepalive_seconds: float = Field(15.0, gt=0, description="idle streams get a keepalive this often")
    subscriber_queue_size: int = Field(1024, ge=1, description="events buffered per subscriber before it must resync")
    events_replay_limit: int = Field(10_000, ge=1, description="most stream entries a resume replays before resync")
    events_maxlen: int = Field(100_000, ge=1000, description="approximate length cap of the events stream")
    events_retention_seconds: float = Field(24 * 3600, gt=0, description="events older than this are trimmed")
    agent_silence_default_seconds: int = Field(
        DEFAULT_AGENT_SILENCE_SECONDS,
        ge=1,
        le=MAX_AGENT_SILENCE_SECONDS,
        description="an open session unheard of this long is agent_silent, unless its organization's policy differs",
    )


async def _retention(stream: EventStream, seconds: float) -> None:
    while True:
        try:
            await stream.trim_older_than(seconds)
        except Exception:
            logger.warning("trimming the events stream failed; retrying later", exc_info=True)
        raise_if_cancelled()
        await asyncio.sleep(min(60.0, seconds / 10))


async def build(settings: Settings) -> tuple[RunningServer, Callable[[], Awaitable[None]]]:
    client = redisconn.create_client(settings.redis_url)
    keys = redisconn.Keys(settings.redis_prefix)
    stream = EventStream(client, keys)
    allowance = settings.agent_silence_default_seconds
    store = PresenceStore(client, keys, maxlen=settings.events_maxlen, default_agent_silence_seconds=allowance)
    activity = ActivityStore(client, keys, maxlen=settings.events_maxlen)
    silence = AgentSilence(
        client,
        keys,
        maxlen=settings.events_maxlen,
        default_seconds=allowance,
        watching_since=lambda: hub.watching_since,
    )
    observers = [activity.observe, silence.observe]
    hub = EventHub(stream, queue_capacity=settings.subscriber_queue_size, observers=observers)
    tracker = PresenceTracker(
        store,
        lease_seconds=settings.presence_lease_seconds,
        heartbeat_seconds=settings.presence_heartbeat_seconds,
        grace_seconds=settings.presence_grace_seconds,
        sweep_seconds=settings.presence_sweep_seconds,
        also_sweep=[("sweeping agent silence", silence.sweep)],
    )
    rt = Realtime(hub, tracker, settings.stream_keepalive_seconds, settings.events_replay_limit)
    tasks = [
        asyncio.create_task(hub.run(), name="events-reader"),
        asyncio.create_task(tracker.run(), name="presence"),
        asyncio.create_task(_retention(stream, settings.events_retention_seconds), name="retention"),
    ]
    servicer = RealtimeServicer(rt)

    def add(server: grpc.aio.Server) -> None:
        realtime_pb2_grpc.add_RealtimeServiceServicer_to_server(servicer, server)

    running = await build_server(
        [Servicer(SERVICE_NAME, add)],
        runtime.token_verifier(settings),
        host=settings.grpc_host,
        port=settings.grpc_port,
    )

    async def cleanup() -> None:
        await runtime.stop_tasks(tasks)
        await client.aclose()

    return running, cleanup


async def _main(settings: Settings) -> None:
    running, cleanup = await build(settings)
    # Everything alive now (modules, descriptors, servers) lives as long as the process:
    # keep it out of the full collections, whose pauses would otherwise stall delivery.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    await serve(running, grace=settings.shutdown_grace_seconds, cleanup=cleanup)


def main() -> None:
    settings = load(Settings)
    runtime.start_process("realtime", settings)
    runtime.run(_main(settings))
