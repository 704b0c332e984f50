"""Request parsing and the one way handlers call services.

``call`` forwards the caller's bearer token (services verify it themselves), the end
user's address and the gateway's service identity, applies the deadline, and turns a
gRPC status into the HTTP status of the original's contract.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gateway.errors import HTTPError
from gateway.peers import Peers

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.CANCELLED: 503,
}


def peers(request: Request) -> Peers:
    found: Peers = request.app.state.peers
    return found


def validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:
        return message  # a rule over several fields names them itself
    field = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{field}: unknown field"
    return f"{field}: {message}"


async def parse_body(request: Request, model: type[M]) -> M:
    """The JSON body validated by ``model``; 400 naming the field, 415 for non-JSON."""
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type:
        raise HTTPError(415, "request body must be application/json")
    raw = await request.body()
    try:
        # NaN and the infinities (which Python's json reads) become floats the models
        # refuse by field name.
        data = json.loads(raw) if raw else {}
    except RecursionError:
        raise HTTPError(400, "malformed JSON body: nested too deeply") from None
    except ValueError:
        raise HTTPError(400, "malformed JSON body") from None
    if not isinstance(data, dict):
        raise HTTPError(400, "request body must be a JSON object")
    return parse_data(data, model)


def parse_data(data: Any, model: type[M]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HTTPError(400, validation_message(exc)) from None


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def outgoing_metadata(request: Request) -> list[tuple[str, str]]:
    metadata = [("x-client-address", client_address(request))]
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPError(401, "authorization must be 'Bearer <token>'")
        metadata.append(("authorization", f"Bearer {token.strip()}"))
    identity = peers(request).identity
    if identity is not None:
        metadata.append(("x-service-authorization", identity.token()))
    return metadata


async def call(request: Request, method: Callable[..., Awaitable[R]], message: Any) -> R:
    """Calls ``method`` on behalf of the HTTP caller; raises :class:`HTTPError` on failure."""
    try:
        return await method(message, metadata=outgoing_metadata(request), timeout=peers(request).timeout)
    except grpc.aio.AioRpcError as exc:
        raise http_error_of(exc) from None


def http_error_of(exc: grpc.aio.AioRpcError) -> HTTPError:
    status = HTTP_STATUS.get(exc.code(), 500)
    trailers = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
    headers = {"Retry-After": trailers["retry-after"]} if "retry-after" in trailers else {}
    message = exc.details() or exc.code().name.lower()
    if status == 500:
        message = "internal error"
    return HTTPError(status, message, headers=headers)
