"""In-process sessions and ingest servers on free ports (real PostgreSQL and Redis), stubs,
users, and the totals invariant as a query."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest import main as ingest_main
from services.sessions import main as sessions_main
from tests.support import Caller, TokenFactory, free_port
from workpulse.grpc_server import RunningServer
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc
from workpulse.sessions.v1 import sessions_pb2 as spb
from workpulse.sessions.v1 import sessions_pb2_grpc
from workpulse.settings import load

User = Caller
UserFactory = Callable[..., User]


@dataclass
class Stack:
    """Sessions and ingest in this process, with a stub of each."""

    sessions: sessions_pb2_grpc.SessionsServiceAsyncStub
    ingest: ingest_pb2_grpc.IngestServiceAsyncStub
    ingest_address: str
    sessions_address: str

    async def start(self, user: User) -> spb.Session:
        return (await self.sessions.StartSession(spb.StartSessionRequest(), metadata=user.md)).session

    async def stop(self, user: User, session_id: str) -> spb.Session:
        reply = await self.sessions.StopSession(spb.StopSessionRequest(session_id=session_id), metadata=user.md)
        return reply.session


async def start_ingest(
    sessions_address: str, **overrides: object
) -> tuple[RunningServer, Callable[[], Awaitable[None]]]:
    """An ingest server of this process on a free port, talking to the given sessions."""
    settings = load(ingest_main.Settings, grpc_port=0, sessions_addr=sessions_address, **overrides)
    running, cleanup = await ingest_main.build(settings)

    async def stop() -> None:
        await running.drain(1.0)
        await cleanup()

    return running, stop


@pytest.fixture(scope="session")
async def stack(settings_env: dict[str, str]) -> AsyncIterator[Stack]:
    # Each needs the other's address (sessions closes windows in ingest as it stops a
    # session; ingest hands totals to sessions): ingest's port is chosen first.
    ingest_port = free_port()
    s_running, s_cleanup = await sessions_main.build(
        load(sessions_main.Settings, grpc_port=0, ingest_addr=f"127.0.0.1:{ingest_port}")
    )
    sessions_address = f"127.0.0.1:{s_running.port}"
    i_running, i_cleanup = await ingest_main.build(
        load(
            ingest_main.Settings,
            grpc_port=ingest_port,
            sessions_addr=sessions_address,
            ingest_redeliver_after_seconds=0.5,
        )
    )
    ingest_address = f"127.0.0.1:{i_running.port}"
    s_channel = grpc.aio.insecure_channel(sessions_address)
    i_channel = grpc.aio.insecure_channel(ingest_address)
    yield Stack(
        sessions_pb2_grpc.SessionsServiceStub(s_channel),  # type: ignore[arg-type]
        ingest_pb2_grpc.IngestServiceStub(i_channel),  # type: ignore[arg-type]
        ingest_address,
        sessions_address,
    )
    await i_channel.close()
    await s_channel.close()
    await i_running.drain(1.0)
    await i_cleanup()
    await s_running.drain(1.0)
    await s_cleanup()


@pytest.fixture(scope="session")
def make_user(tokens: TokenFactory) -> UserFactory:
    def make(role: str = "employee", org: str | None = None) -> User:
        org = org or str(uuid.uuid4())
        sub = str(uuid.uuid4())
        return User(sub, org, role, tokens.user(org=org, sub=sub, role=role))

    return make


def stamp(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value.astimezone(UTC))
    return out


def event(
    seconds: int = 60,
    *,
    kind: int = pb.ACTIVITY_TYPE_ACTIVE,
    at: datetime | None = None,
    client_id: str = "",
    app: str = "",
) -> pb.ActivityEvent:
    message = pb.ActivityEvent(activity_type=kind, duration_seconds=seconds, client_event_id=client_id, app_name=app)
    if at is not None:
        message.timestamp.CopyFrom(stamp(at))
    return message


async def invariant_violations(engine: AsyncEngine, session_ids: list[str] | None = None) -> list[tuple[object, ...]]:
    """Sessions whose stored totals differ from the sum of their stored events."""
    rows = await engine.connect()
    try:
        result = await rows.execute(
            text(
                """
                select s.id::text, s.total_active_seconds, s.total_idle_seconds,
                       coalesce(e.active, 0), coalesce(e.idle, 0)
                from sessions.work_sessions s
                left join (
                    select session_id,
                           sum(duration_seconds) filter (where activity_type = 'active') as active,
                           sum(duration_seconds) filter (where activity_type = 'idle') as idle
                    from ingest.activity_logs group by session_id
                ) e on e.session_id = s.id
                where (cast(:ids as uuid[]) is null or s.id = any(cast(:ids as uuid[])))
                  and (s.total_active_seconds <> coalesce(e.active, 0) or s.total_idle_seconds <> coalesce(e.idle, 0))
                """
            ),
            {"ids": session_ids},
        )
        return [tuple(r) for r in result]
    finally:
        await rows.close()


async def pending_handoffs(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("select count(*) from ingest.outbox where topic = 'session_totals' and published_at is null")
        )
        return int(found.scalar_one())
