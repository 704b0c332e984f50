"""The gRPC server bootstrap every service uses.

``build_server`` makes a grpc.aio server (callable from a test on port 0) with the
standard health service, reflection, OpenTelemetry tracing and the kernel interceptor.
``serve`` runs it until SIGTERM/SIGINT, then flips health to NOT_SERVING, drains
in-flight RPCs for the grace period, runs the service's clean-up and returns (exit 0).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from workpulse import telemetry
from workpulse.identity import TokenVerifier
from workpulse.interceptors import KernelInterceptor

logger = logging.getLogger("workpulse.server")


def _tracing_server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    if not telemetry.enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]


@dataclass
class Servicer:
    """One gRPC service to mount: its full name and the generated ``add_*_to_server``."""

    name: str
    add: Callable[[grpc.aio.Server], None]
    public_methods: Sequence[str] = ()
    # Methods only services may call: a user token is PERMISSION_DENIED before its request
    # is looked at, so such a caller learns nothing about what a valid body would be.
    service_methods: Sequence[str] = ()


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    names: list[str] = field(default_factory=list)

    async def drain(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def build_server(
    servicers: Iterable[Servicer], verifier: TokenVerifier, *, host: str = "127.0.0.1", port: int = 0
) -> RunningServer:
    servicers = list(servicers)
    public = [m for s in servicers for m in s.public_methods]
    service_only = [f"/{s.name}/{m}" for s in servicers for m in s.service_methods]
    server = grpc.aio.server(
        interceptors=[*_tracing_server_interceptors(), KernelInterceptor(verifier, public, service_only)],
        options=[
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            # Clients re-resolve peers when a connection ages out, so new replicas get traffic.
            ("grpc.max_connection_age_ms", 5 * 60 * 1000),
            ("grpc.max_connection_age_grace_ms", 30 * 1000),
        ],
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [s.name for s in servicers]
    for s in servicers:
        s.add(server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, bound, health_servicer, names)


async def serve(
    running: RunningServer,
    *,
    grace: float,
    cleanup: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Blocks until SIGTERM or SIGINT, then shuts down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.info("serving", extra={"fields": {"port": running.port, "services": running.names}})
    await stop.wait()
    logger.info("draining", extra={"fields": {"grace_seconds": grace}})
    await running.drain(grace)
    if cleanup is not None:
        await cleanup()
    logger.info("stopped")
