"""OpenTelemetry tracing: gateway → gRPC → SQL and Redis, exported over OTLP if configured."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def configure(service: str, otlp_endpoint: str | None) -> TracerProvider:
    """Install a tracer provider. Spans are always created (log lines carry their ids);
    they leave the process only when an OTLP endpoint is set."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"workpulse-{service}"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(tracer_provider=provider)
    return provider
