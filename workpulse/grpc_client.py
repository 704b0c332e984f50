"""Channels to peer services: what every outgoing call carries.

Kept apart from the server bootstrap so a process that only calls services (the gateway)
imports no server-side machinery (and, through it, no database driver).
"""

from __future__ import annotations

import contextvars
import time

import grpc

from workpulse import telemetry
from workpulse.identity import ServiceIdentity

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


def serving_within(seconds: float | None) -> None:
    """Records the deadline of the request being served (by the server interceptor), which
    calls made while serving inherit."""
    _deadline.set(time.monotonic() + seconds if seconds is not None else None)


def remaining_timeout(default: float | None) -> float | None:
    """Time left before the incoming deadline, for calls made while serving (propagation);
    ``default`` when the request being served has no deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    left = max(0.0, deadline - time.monotonic())
    return left if default is None else min(default, left)


def _tracing_client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    if not telemetry.enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


class _OutgoingMetadata:
    """Adds the service identity and propagates the remaining deadline to outgoing calls.

    grpc.aio files an interceptor under the first call kind it implements only, so each
    kind gets its own subclass below. Streams get no default deadline (a subscription may
    live for hours), only the deadline of the request being served, if any.
    """

    streaming = False

    def __init__(self, identity: ServiceIdentity | None, default_timeout: float) -> None:
        self._identity = identity
        self._default = default_timeout

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if self._identity is not None and "authorization" not in metadata.keys():  # noqa: SIM118
            metadata.add("authorization", f"Bearer {self._identity.token()}")
        timeout = details.timeout
        if timeout is None:
            timeout = remaining_timeout(None if self.streaming else self._default)
        return grpc.aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnary(_OutgoingMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request)


class _UnaryStream(_OutgoingMetadata, grpc.aio.UnaryStreamClientInterceptor):
    streaming = True

    async def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request)


class _StreamUnary(_OutgoingMetadata, grpc.aio.StreamUnaryClientInterceptor):
    streaming = True

    async def intercept_stream_unary(self, continuation, details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request_iterator)


class _StreamStream(_OutgoingMetadata, grpc.aio.StreamStreamClientInterceptor):
    streaming = True

    async def intercept_stream_stream(self, continuation, details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request_iterator)


def channel(
    address: str, *, identity: ServiceIdentity | None = None, default_timeout: float = 10.0
) -> grpc.aio.Channel:
    """A channel to a peer service: traced, with deadlines and (optionally) our identity."""
    interceptors: list[grpc.aio.ClientInterceptor] = [
        *_tracing_client_interceptors(),
        *(kind(identity, default_timeout) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)),
    ]
    return grpc.aio.insecure_channel(
        address,
        interceptors=interceptors,
        # round_robin spreads calls over every address of a headless Service (all replicas).
        options=[
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30000),
            ("grpc.lb_policy_name", "round_robin"),
        ],
    )
