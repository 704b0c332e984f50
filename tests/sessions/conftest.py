"""An in-process sessions server on a free port (real PostgreSQL and Redis) and stubs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest

from services.sessions.main import Settings, build
from tests.support import TokenFactory
from workpulse.grpc_server import RunningServer
from workpulse.sessions.v1 import sessions_pb2_grpc
from workpulse.settings import load


@dataclass
class Server:
    running: RunningServer
    channel: grpc.aio.Channel
    stub: sessions_pb2_grpc.SessionsServiceAsyncStub

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"


async def start_server(**overrides: object) -> tuple[Server, Callable[[], Awaitable[None]]]:
    running, cleanup = await build(load(Settings, grpc_port=0, **overrides))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    server = Server(running, channel, sessions_pb2_grpc.SessionsServiceStub(channel))

    async def stop() -> None:
        await channel.close()
        await running.drain(1.0)
        await cleanup()

    return server, stop


@pytest.fixture(scope="session")
async def sessions_server(settings_env: dict[str, str]) -> AsyncIterator[Server]:
    server, stop = await start_server()
    yield server
    await stop()


@dataclass(frozen=True)
class User:
    """A caller with a token: ``md`` is the gRPC metadata carrying it."""

    id: str
    org: str
    role: str
    token: str

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


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
