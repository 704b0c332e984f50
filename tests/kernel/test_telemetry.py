"""Tracing: one trace spans a gRPC call and the SQL and Redis work done while serving it,
when an exporter is configured; with none, the kernel installs no instrumentation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from workpulse import telemetry
from workpulse.db import UnitOfWork, create_engine
from workpulse.grpc_client import channel
from workpulse.grpc_server import Servicer, build_server
from workpulse.identity import TokenVerifier

VERIFIER = TokenVerifier([], None, issuer="workpulse-auth", audience="workpulse")


def _probe(serve: Any) -> Servicer:
    handler = grpc.method_handlers_generic_handler("probe.Probe", {"Do": grpc.unary_unary_rpc_method_handler(serve)})
    return Servicer("probe.Probe", lambda server: server.add_generic_rpc_handlers((handler,)), ("Do",))


@pytest.fixture
def tracing_off_afterwards() -> Iterator[None]:
    yield
    telemetry.configure("kernel-test", None)


async def test_grpc_sql_and_redis_spans_share_one_trace(
    database_url: str, server_urls: tuple[str, str], tracing_off_afterwards: None
) -> None:
    exporter = InMemorySpanExporter()
    provider = telemetry.configure("kernel-test", None, sql_spans=True, exporter=exporter)
    assert provider is not None and telemetry.enabled()
    uow = UnitOfWork(create_engine(database_url, pool_size=1))
    client = aioredis.Redis.from_url(server_urls[1])

    async def serve(request: bytes, context: Any) -> bytes:
        async with uow.tenant("00000000-0000-0000-0000-000000000001") as conn:
            await conn.execute(text("select 1"))
        await client.ping()
        return b"ok"

    running = await build_server([_probe(serve)], VERIFIER)
    ch = channel(f"127.0.0.1:{running.port}")
    with trace.get_tracer("test").start_as_current_span("gateway request") as root:
        assert await ch.unary_unary("/probe.Probe/Do")(b"x") == b"ok"
    await ch.close()
    await running.drain(0)
    await client.aclose()
    await uow.engine.dispose()
    provider.force_flush()

    trace_id = root.get_span_context().trace_id
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
    kinds = {s.attributes.get("rpc.system") or s.attributes.get("db.system") for s in spans if s.attributes}
    assert {"grpc", "postgresql", "redis"} <= kinds, [(s.name, dict(s.attributes or {})) for s in spans]


async def test_without_an_exporter_serving_creates_no_spans(database_url: str) -> None:
    # A real provider is installed first, so any instrumentation left on would record spans.
    telemetry.configure("kernel-test", None, exporter=InMemorySpanExporter())
    assert telemetry.configure("kernel-test", None) is None
    assert not telemetry.enabled()
    uow = UnitOfWork(create_engine(database_url, pool_size=1))
    seen: list[bool] = []

    async def serve(request: bytes, context: Any) -> bytes:
        seen.append(trace.get_current_span().get_span_context().is_valid)
        async with uow.tenant("00000000-0000-0000-0000-000000000001") as conn:
            await conn.execute(text("select 1"))
        return b"ok"

    running = await build_server([_probe(serve)], VERIFIER)
    ch = channel(f"127.0.0.1:{running.port}")
    assert await ch.unary_unary("/probe.Probe/Do")(b"x") == b"ok"
    await ch.close()
    await running.drain(0)
    await uow.engine.dispose()
    assert seen == [False]
