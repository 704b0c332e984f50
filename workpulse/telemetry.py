"""OpenTelemetry tracing: gateway → gRPC → SQL and Redis, when spans can leave the process.

Tracing is off unless an exporter is configured (an OTLP endpoint, or a test's own): with
nowhere to send them, spans are pure cost on the hot path (a tenth of a request's CPU was
span bookkeeping), so no instrumentation is installed at all. When it is on, sampling
follows the SDK's standard ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` variables
(e.g. ``parentbased_traceidratio`` and ``0.05``), and a span per SQL statement is opt-in
(``OTEL_SQL_SPANS``): at thousands of statements a second it would dwarf the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter


@dataclass
class _Tracing:
    enabled: bool = False
    sql_spans: bool = False


_tracing = _Tracing()


def enabled() -> bool:
    """Whether this process traces (instrumentation is installed only then)."""
    return _tracing.enabled


def sql_spans() -> bool:
    """Whether engines made from now on emit a span per SQL statement."""
    return _tracing.enabled and _tracing.sql_spans


def configure(
    service: str, otlp_endpoint: str | None, *, sql_spans: bool = False, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Installs a tracer provider exporting to ``otlp_endpoint`` (or ``exporter``); with
    neither, turns tracing off and returns None. Call before building servers, channels,
    engines and apps: they read :func:`enabled` when they are made."""
    if otlp_endpoint and exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint)
    _tracing.enabled, _tracing.sql_spans = exporter is not None, sql_spans
    if exporter is None:
        return None
    # The SDK is imported only here: a process that does not trace never loads it.
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"workpulse-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(tracer_provider=provider)
    return provider
