"""The one server interceptor: authentication, deadlines, logging and error mapping.

Servicers read the verified caller with :func:`principal`; use cases raise the typed
errors of ``workpulse.errors`` and never touch the gRPC context.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

from workpulse import errors, log, text
from workpulse.grpc_client import serving_within
from workpulse.identity import Principal, TokenVerifier

logger = logging.getLogger("workpulse.rpc")

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)
_client_address: contextvars.ContextVar[str] = contextvars.ContextVar("client_address", default="")

STATUS_OF: dict[type[errors.WorkPulseError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Conflict: grpc.StatusCode.ABORTED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def principal() -> Principal:
    """The verified caller of the RPC being served."""
    found = _principal.get()
    if found is None:
        raise errors.Unauthenticated("missing bearer token")
    return found


def client_address() -> str:
    """The end user's address: the gateway's word for it when the gateway called, else the peer."""
    return _client_address.get()


def _database_unavailable(exc: BaseException) -> bool:
    """A lost connection or an exhausted pool. SQLAlchemy is not imported for this check: it
    would put 10 MiB into a process with no SQL (realtime), and where it is not loaded no
    exception can be one of its classes."""
    if "sqlalchemy.exc" not in sys.modules:
        return False
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, OperationalError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _status_for(exc: BaseException) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
    if isinstance(exc, errors.WorkPulseError):
        trailers = [("wp-field", exc.field)] if exc.field else []
        if isinstance(exc, errors.RateLimited):
            trailers.append(("retry-after", str(exc.retry_after)))
        code = next(c for k, c in STATUS_OF.items() if isinstance(exc, k))
        return code, exc.message, trailers
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "request"
        return grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {first['msg']}", [("wp-field", field)]
    if _database_unavailable(exc):
        logger.warning("database unavailable", exc_info=exc)
        return grpc.StatusCode.UNAVAILABLE, "database unavailable", []
    if isinstance(exc, RedisConnectionError | RedisTimeout):
        logger.warning("redis unavailable", exc_info=exc)
        return grpc.StatusCode.UNAVAILABLE, "redis unavailable", []
    logger.error("unhandled error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, "internal error", []


class KernelInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self, verifier: TokenVerifier, public_methods: Iterable[str], service_methods: Iterable[str] = ()
    ) -> None:
        self._verifier = verifier
        self._public = frozenset(public_methods)
        self._service_only = frozenset(service_methods)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        method: str = details.method
        if method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return handler
        public = any(method.endswith("/" + m) or method == m for m in self._public)
        kwargs: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, method, public), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._streaming(handler.unary_stream, method, public), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary, method, public), **kwargs)
        return grpc.stream_stream_rpc_method_handler(self._streaming(handler.stream_stream, method, public), **kwargs)

    def _enter(self, context: grpc.aio.ServicerContext[Any, Any], method: str, public: bool) -> None:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        serving_within(context.time_remaining())
        caller: Principal | None = None
        auth = metadata.get("authorization", "")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise errors.Unauthenticated("authorization must be 'Bearer <token>'")
            caller = self._verifier.verify(token.strip())
        elif not public:
            raise errors.Unauthenticated("missing bearer token")
        _principal.set(caller)
        if method in self._service_only and (caller is None or not caller.is_service):
            raise errors.PermissionDenied("this call is for services only")
        address = context.peer()
        forwarded = metadata.get("x-client-address")
        gateway = metadata.get("x-service-authorization")
        if forwarded and gateway and self._verifier.verify(gateway).is_service:
            address = forwarded
        _client_address.set(address)
        if caller is not None:
            log.user_id.set(caller.subject)
            log.tenant_id.set(caller.organization_id)

    def _unary(self, behavior: Any, method: str, public: bool) -> Any:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            try:
                self._enter(context, method, public)
                _refuse_control_characters(request)
                return await behavior(request, context)
            except Exception as exc:
                code, message, trailers = _status_for(exc)
                await context.abort(code, message, trailing_metadata=tuple(trailers))
            finally:
                _log_call(method, started, context)

        return wrapped

    def _streaming(self, behavior: Any, method: str, public: bool) -> Any:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                self._enter(context, method, public)
                _refuse_control_characters(request)
                async for item in behavior(request, context):
                    yield item
            except Exception as exc:
                code, message, trailers = _status_for(exc)
                await context.abort(code, message, trailing_metadata=tuple(trailers))
            finally:
                _log_call(method, started, context)

        return wrapped


def _refuse_control_characters(request: Any) -> None:
    """After authentication (an unauthenticated caller learns nothing about its body): a
    request message whose text the database would refuse is INVALID_ARGUMENT naming the
    field. Streamed requests are checked by the service, message by message."""
    if isinstance(request, Message) and (field := _field_with_control_character(request)):
        raise errors.InvalidArgument(f"{field}: {text.CONTROL_MESSAGE}", field=field)


def _field_with_control_character(message: Message, prefix: str = "") -> str | None:
    """The path (``events.3.app_name``) of the first string field anywhere in ``message``
    holding a control character, or None."""
    for field, value in message.ListFields():
        name = prefix + field.name
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_STRING:
            for index, written in enumerate(value if repeated else (value,)):
                if text.has_control_character(written):
                    return f"{name}.{index}" if repeated else name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if isinstance(key, str) and text.has_control_character(key):
                        return f"{name} (a key)"
                    if isinstance(item, str) and text.has_control_character(item):
                        return f"{name}.{key}"
                    if isinstance(item, Message) and (found := _field_with_control_character(item, f"{name}.{key}.")):
                        return found
                continue
            for index, item in enumerate(value if repeated else (value,)):
                found = _field_with_control_character(item, f"{name}.{index}." if repeated else f"{name}.")
                if found:
                    return found
    return None


# Calls slower than this are logged at INFO even when they succeed.
SLOW_CALL_SECONDS = 1.0


def _log_call(method: str, started: float, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """One line per failed or slow call at INFO; successful fast ones only at DEBUG (a line
    per call was a large share of the hot path's CPU at thousands of calls a second)."""
    code = context.code()
    failed = isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK
    seconds = time.perf_counter() - started
    level = logging.INFO if failed or seconds >= SLOW_CALL_SECONDS else logging.DEBUG
    if not logger.isEnabledFor(level):
        return
    logger.log(
        level,
        "rpc",
        extra={
            "fields": {
                "method": method,
                "code": code.name if isinstance(code, grpc.StatusCode) else "OK",
                "ms": round(seconds * 1000, 2),
            }
        },
    )
