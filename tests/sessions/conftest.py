"""An in-process sessions server on a free port (real PostgreSQL and Redis) and stubs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
import pytest

from services.sessions.main import Settings, build
from tests.support import Caller, InProcessServer, TokenFactory, start_in_process
from workpulse.sessions.v1 import sessions_pb2 as pb
from workpulse.sessions.v1 import sessions_pb2_grpc
from workpulse.settings import load

# The async stub type exists only in the generated .pyi, hence a string alias.
Server: TypeAlias = "InProcessServer[sessions_pb2_grpc.SessionsServiceAsyncStub]"


async def start_server(**overrides: object) -> tuple[Server, Callable[[], Awaitable[None]]]:
    return await start_in_process(
        build, load(Settings, grpc_port=0, **overrides), sessions_pb2_grpc.SessionsServiceStub
    )


@pytest.fixture(scope="session")
async def sessions_server(settings_env: dict[str, str]) -> AsyncIterator[Server]:
    server, stop = await start_server()
    yield server
    await stop()


User = Caller
UserFactory = Callable[..., User]


@pytest.fixture(scope="session")
def make_user(tokens: TokenFactory) -> UserFactory:
    def make(role: str = "employee", org: str | None = None) -> User:
        org = org or str(uuid.uuid4())
        sub = str(uuid.uuid4())
        return User(sub, org, role, tokens.user(org=org, sub=sub, role=role))

    return make


@pytest.fixture(scope="session")
def service_md(tokens: TokenFactory) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {tokens.service('ingest')}"),)


async def invalid_argument(call: Any, field: str) -> None:
    """``call`` fails with INVALID_ARGUMENT naming ``field`` (in its details and its wp-field trailer)."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert field in (error.details() or ""), error.details()
    assert dict(error.trailing_metadata() or ()).get("wp-field") == field, error.trailing_metadata()


def apply_request(
    user: User, session_id: str, key: str, active: int = 60, idle: int = 0, **extra: object
) -> pb.ApplyActivityRequest:
    """A hand-off of ``active``/``idle`` seconds (one event) to a session of ``user``'s organization."""
    return pb.ApplyActivityRequest(
        organization_id=user.org,
        session_id=session_id,
        idempotency_key=key,
        active_seconds=active,
        idle_seconds=idle,
        event_count=1,
        **extra,  # type: ignore[arg-type]
    )


async def start_session(server: Server, user: User) -> pb.Session:
    return (await server.stub.StartSession(pb.StartSessionRequest(), metadata=user.md)).session
