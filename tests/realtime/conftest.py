"""Fixtures of the realtime tests: an in-process realtime server per test, on its own prefix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import redis.asyncio as aioredis

from services.realtime.main import Settings, build
from tests.support import TokenFactory
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc
from workpulse.redisconn import Keys, events_stream


@dataclass
class Org:
    """An organization with a manager and two employees, and their tokens."""

    id: str
    manager: str
    employees: tuple[str, str]
    tokens: dict[str, str]

    @classmethod
    def create(cls, factory: TokenFactory, *, ttl: int = 900) -> Org:
        org, manager = str(uuid.uuid4()), str(uuid.uuid4())
        employees = (str(uuid.uuid4()), str(uuid.uuid4()))
        tokens = {manager: factory.user(org, manager, "manager", ttl=ttl)}
        tokens |= {e: factory.user(org, e, "employee", ttl=ttl) for e in employees}
        return cls(org, manager, employees, tokens)

    @property
    def users(self) -> list[str]:
        return [self.manager, *self.employees]


@dataclass
class RealtimeServer:
    address: str
    keys: Keys
    settings: Settings

    def stub(self, channel: grpc.aio.Channel) -> pb_grpc.RealtimeServiceStub:
        return pb_grpc.RealtimeServiceStub(channel)

    @property
    def stream(self) -> str:
        return events_stream(self.keys)


FAST_PRESENCE = {
    "presence_lease_seconds": 2.0,
    "presence_heartbeat_seconds": 0.5,
    "presence_grace_seconds": 1.0,
    "presence_sweep_seconds": 0.2,
    "stream_keepalive_seconds": 1.0,
}


@pytest.fixture
def rt_prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}:rt{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def realtime(settings_env: dict[str, str], rt_prefix: str) -> AsyncIterator[RealtimeServer]:
    settings = Settings(grpc_port=0, redis_prefix=rt_prefix, **FAST_PRESENCE)  # type: ignore[arg-type]
    running, cleanup = await build(settings)
    yield RealtimeServer(f"127.0.0.1:{running.port}", Keys(rt_prefix), settings)
    await running.server.stop(0.5)
    await cleanup()


@pytest.fixture
async def channel(realtime: RealtimeServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(realtime.address) as ch:
        yield ch


@pytest.fixture
async def redis(redis_client: aioredis.Redis) -> aioredis.Redis:
    return redis_client


def auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def subscribe_request(after_id: str = "", *, presence: bool = False, connection: str = "") -> pb.SubscribeRequest:
    return pb.SubscribeRequest(after_id=after_id, track_presence=presence, connection_id=connection)
