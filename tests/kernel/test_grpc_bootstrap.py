"""The server bootstrap: authentication, error mapping, health, reflection, deadlines and
graceful drain, on a real grpc.aio server on a real port with a test servicer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support import TokenFactory
from workpulse import errors
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc
from workpulse.grpc_client import channel, remaining_timeout
from workpulse.grpc_server import RunningServer, Servicer, build_server
from workpulse.identity import TokenVerifier, load_public_key
from workpulse.interceptors import principal

FAILURES: dict[str, Exception] = {
    "invalid": errors.InvalidArgument("email: not an email", field="email"),
    "missing": errors.NotFound("user not found"),
    "limited": errors.RateLimited("too many log-ins", retry_after=7),
    "conflict": errors.Conflict("version mismatch"),
    "crash": RuntimeError("secret internals"),
    "redis-down": __import__("redis").exceptions.ConnectionError("connection refused"),
}


class ProbeServicer(auth_pb2_grpc.AuthServiceServicer):
    """GetUser echoes the caller; its user_id picks a failure; LogIn is public and slow."""

    async def GetUser(self, request: auth_pb2.GetUserRequest, context: Any) -> auth_pb2.GetUserResponse:
        if request.user_id in FAILURES:
            raise FAILURES[request.user_id]
        caller = principal()
        name = f"{remaining_timeout(99):.0f}"
        return auth_pb2.GetUserResponse(
            user=auth_pb2.User(id=caller.subject, organization_id=caller.organization_id or "", name=name)
        )

    async def LogIn(self, request: auth_pb2.LogInRequest, context: Any) -> auth_pb2.LogInResponse:
        await asyncio.sleep(float(request.password or 0))
        return auth_pb2.LogInResponse(user=auth_pb2.User(email=request.email))


@pytest.fixture
async def server(key_dir) -> AsyncIterator[RunningServer]:  # type: ignore[no-untyped-def]
    verifier = TokenVerifier(
        [load_public_key(key_dir / "access_public.pem")],
        load_public_key(key_dir / "service_public.pem"),
        issuer="workpulse-auth",
        audience="workpulse",
    )
    servicer = Servicer(
        "workpulse.auth.v1.AuthService",
        lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(ProbeServicer(), s),
        public_methods=("LogIn",),
    )
    running = await build_server([servicer], verifier)
    yield running
    await running.server.stop(None)


_channels: list[grpc.aio.Channel] = []


def _stub(running: RunningServer) -> auth_pb2_grpc.AuthServiceStub:
    # A channel closes when collected; keep it for the test's lifetime.
    _channels.append(channel(f"127.0.0.1:{running.port}"))
    return auth_pb2_grpc.AuthServiceStub(_channels[-1])


async def test_verified_caller_reaches_the_servicer(server: RunningServer, tokens: TokenFactory) -> None:
    org, user = str(uuid.uuid4()), str(uuid.uuid4())
    reply = await _stub(server).GetUser(
        auth_pb2.GetUserRequest(), metadata=[("authorization", f"Bearer {tokens.user(org, user)}")], timeout=30
    )
    assert (reply.user.id, reply.user.organization_id) == (user, org)
    assert 25 <= int(reply.user.name) <= 30, "the incoming deadline is visible for propagation"


@pytest.mark.parametrize(
    "metadata",
    [[], [("authorization", "Basic abc")], [("authorization", "Bearer forged")]],
    ids=["missing", "wrong scheme", "forged"],
)
async def test_protected_method_refuses_bad_credentials(server: RunningServer, metadata: list[Any]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(server).GetUser(auth_pb2.GetUserRequest(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_public_method_needs_no_token(server: RunningServer) -> None:
    reply = await _stub(server).LogIn(auth_pb2.LogInRequest(email="a@b.c"))
    assert reply.user.email == "a@b.c"


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("missing", grpc.StatusCode.NOT_FOUND),
        ("limited", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("conflict", grpc.StatusCode.ABORTED),
        ("crash", grpc.StatusCode.INTERNAL),
        ("redis-down", grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_typed_errors_map_to_status_codes(
    server: RunningServer, tokens: TokenFactory, case: str, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(server).GetUser(
            auth_pb2.GetUserRequest(user_id=case), metadata=[("authorization", f"Bearer {tokens.user()}")]
        )
    assert caught.value.code() == code
    trailers = dict(caught.value.trailing_metadata() or ())
    if case == "invalid":
        assert trailers["wp-field"] == "email"
    if case == "limited":
        assert trailers["retry-after"] == "7"
    if case == "crash":
        assert "secret" not in (caught.value.details() or ""), "internal details never leak"


async def test_health_and_reflection(server: RunningServer) -> None:
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    health = await health_pb2_grpc.HealthStub(ch).Check(
        health_pb2.HealthCheckRequest(service="workpulse.auth.v1.AuthService")
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stream = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    async for reply in stream:
        names = {s.name for s in reply.list_services_response.service}
        assert "workpulse.auth.v1.AuthService" in names
        break
    await ch.close()


async def test_drain_finishes_in_flight_calls(server: RunningServer) -> None:
    stub = _stub(server)
    in_flight = [
        asyncio.ensure_future(stub.LogIn(auth_pb2.LogInRequest(email=f"{i}@x.y", password="0.5"))) for i in range(5)
    ]
    await asyncio.sleep(0.1)
    drain = asyncio.create_task(server.drain(grace=5))
    replies = await asyncio.gather(*in_flight)
    assert sorted(r.user.email for r in replies) == sorted(f"{i}@x.y" for i in range(5))
    await drain
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.LogIn(auth_pb2.LogInRequest(email="late@x.y"), timeout=2)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, "no new work after the drain"


async def test_outgoing_identity_and_deadline_reach_every_call_kind(key_dir) -> None:  # type: ignore[no-untyped-def]
    """grpc.aio files a client interceptor under one call kind only; each kind must carry
    the service identity, and a stream gets no default deadline."""
    seen: list[tuple[str, str, bool]] = []

    def record(kind: str, context: Any) -> None:
        metadata = dict(context.invocation_metadata())
        seen.append((kind, metadata.get("authorization", ""), context.time_remaining() is not None))

    async def unary(request: bytes, context: Any) -> bytes:
        record("unary", context)
        return b"ok"

    async def server_stream(request: bytes, context: Any) -> Any:
        record("server_stream", context)
        yield b"ok"

    async def bidi(requests: Any, context: Any) -> Any:
        record("bidi", context)
        async for _ in requests:
            yield b"ok"

    handler = grpc.method_handlers_generic_handler(
        "probe.Probe",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    from workpulse.identity import ServiceIdentity, load_private_key

    identity = ServiceIdentity("probe", load_private_key(key_dir / "service_private.pem"), "workpulse")
    ch = channel(f"127.0.0.1:{port}", identity=identity)
    assert await ch.unary_unary("/probe.Probe/Unary")(b"x") == b"ok"
    assert [r async for r in ch.unary_stream("/probe.Probe/ServerStream")(b"x")] == [b"ok"]

    async def one() -> Any:
        yield b"x"

    assert [r async for r in ch.stream_stream("/probe.Probe/Bidi")(one())] == [b"ok"]
    await ch.close()
    await server.stop(None)
    kinds = {kind: (auth.startswith("Bearer "), has_deadline) for kind, auth, has_deadline in seen}
    assert kinds == {"unary": (True, True), "server_stream": (True, False), "bidi": (True, False)}
