"""One trace spans a gRPC call and the SQL and Redis work done while serving it."""

from __future__ import annotations

from typing import Any

import grpc
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from workpulse import telemetry
from workpulse.db import UnitOfWork, create_engine
from workpulse.grpc_server import channel


async def test_grpc_sql_and_redis_spans_share_one_trace(database_url: str, server_urls: tuple[str, str]) -> None:
    provider = trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):
        provider = telemetry.configure("kernel-test", None)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    uow = UnitOfWork(create_engine(database_url, pool_size=1))
    client = aioredis.Redis.from_url(server_urls[1])

    async def serve(request: bytes, context: Any) -> bytes:
        async with uow.tenant("00000000-0000-0000-0000-000000000001") as conn:
            await conn.execute(text("select 1"))
        await client.ping()
        return b"ok"

    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    server = grpc.aio.server(interceptors=[aio_server_interceptor()])
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("probe.Probe", {"Do": grpc.unary_unary_rpc_method_handler(serve)}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ch = channel(f"127.0.0.1:{port}")
    with trace.get_tracer("test").start_as_current_span("gateway request") as root:
        assert await ch.unary_unary("/probe.Probe/Do")(b"x") == b"ok"
    await ch.close()
    await server.stop(None)
    await client.aclose()
    await uow.engine.dispose()

    trace_id = root.get_span_context().trace_id
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
    kinds = {s.attributes.get("rpc.system") or s.attributes.get("db.system") for s in spans if s.attributes}
    assert {"grpc", "postgresql", "redis"} <= kinds, [(s.name, dict(s.attributes or {})) for s in spans]
