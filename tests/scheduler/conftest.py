"""The scheduler's test rig: one in-process gRPC server carrying the scheduler service and
the auth/sessions/ingest reporting services (real PostgreSQL, real ports), a job runner
factory with a fast retry policy, and a world builder that writes organizations, users,
sessions and activity straight into the owners' tables (test set-up only, as the owner)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.auth.reporting_servicer import reporting_servicer as auth_reporting
from services.ingest.reporting_servicer import reporting_servicer as ingest_reporting
from services.scheduler.jobs import JobConfig, JobContext
from services.scheduler.mesh import GrpcPeers, Peers
from services.scheduler.runner import JobRunner
from services.scheduler.servicer import SchedulerServicer, mounted
from services.scheduler.use_cases import Reports
from services.sessions.reporting_servicer import reporting_servicer as sessions_reporting
from tests.support import TokenFactory
from workpulse.db import UnitOfWork, create_engine
from workpulse.grpc_client import channel
from workpulse.grpc_server import RunningServer, build_server
from workpulse.identity import ServiceIdentity, TokenVerifier, load_private_key, load_public_key
from workpulse.postgres import MAINTENANCE_ROLE
from workpulse.scheduler.v1 import scheduler_pb2_grpc


@dataclass
class Rig:
    running: RunningServer
    maintenance: AsyncEngine
    engine: AsyncEngine
    peers: GrpcPeers
    stub: scheduler_pb2_grpc.SchedulerServiceAsyncStub
    runners: list[JobRunner] = field(default_factory=list)
    scheduler: RunningServer | None = None

    @property
    def reporting_address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    @property
    def scheduler_address(self) -> str:
        assert self.scheduler is not None
        return f"127.0.0.1:{self.scheduler.port}"

    def runner(self, peers: Peers | None = None, *, runner_id: str = "test", **options: Any) -> JobRunner:
        options.setdefault("backoff_seconds", 0.01)
        options.setdefault("lock_wait_seconds", 30.0)
        ctx = JobContext(UnitOfWork(self.maintenance), peers or self.peers, JobConfig())
        made = JobRunner(self.maintenance, ctx, runner_id=runner_id, **options)
        self.runners.append(made)
        return made


@pytest.fixture(scope="session")
async def rig(database_url: str, key_dir: Path) -> AsyncIterator[Rig]:
    maintenance = create_engine(database_url, role=MAINTENANCE_ROLE, pool_size=8)
    engine = create_engine(database_url, pool_size=4)
    verifier = TokenVerifier(
        [load_public_key(key_dir / "access_public.pem")],
        load_public_key(key_dir / "service_public.pem"),
        issuer="workpulse-auth",
        audience="workpulse",
    )
    identity = ServiceIdentity("scheduler", load_private_key(key_dir / "service_private.pem"), "workpulse")
    reporting = await build_server(
        [auth_reporting(maintenance), sessions_reporting(maintenance), ingest_reporting(maintenance)], verifier
    )
    address = f"127.0.0.1:{reporting.port}"
    peer_channels = [channel(address, identity=identity) for _ in range(3)]
    peers = GrpcPeers(*peer_channels, identity=identity, zone_ttl=0.0)
    rig = Rig(reporting, maintenance, engine, peers, None)  # type: ignore[arg-type]
    servicer = SchedulerServicer(Reports(UnitOfWork(engine), peers), rig.runner(runner_id="rpc"))
    scheduler = await build_server([mounted(servicer)], verifier)
    rig.scheduler = scheduler
    scheduler_channel = channel(f"127.0.0.1:{scheduler.port}")
    peer_channels.append(scheduler_channel)
    rig.stub = scheduler_pb2_grpc.SchedulerServiceStub(scheduler_channel)
    yield rig
    for ch in peer_channels:
        await ch.close()
    await scheduler.drain(1.0)
    await reporting.drain(1.0)
    await maintenance.dispose()
    await engine.dispose()


@dataclass(frozen=True)
class Person:
    org: str
    id: str
    timezone: str
    role: str
    token: str

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str
    seconds: int
    app: str | None


@dataclass(frozen=True)
class Session:
    org: str
    id: str
    user: str
    start: datetime
    end: datetime | None
    last_activity_at: datetime | None


class World:
    """Writes rows into the owners' tables as the database owner (test set-up only)."""

    def __init__(self, owner: AsyncEngine, tokens: TokenFactory) -> None:
        self._owner = owner
        self._tokens = tokens

    async def organization(self, timezone: str = "UTC") -> str:
        org = str(uuid.uuid4())
        async with self._owner.begin() as conn:
            await conn.execute(
                text("insert into auth.organizations (id, name, timezone) values (:id, :name, :tz)"),
                {"id": org, "name": f"org {org[:8]}", "tz": timezone},
            )
        return org

    async def user(self, org: str, *, timezone: str = "UTC", role: str = "employee") -> Person:
        user = str(uuid.uuid4())
        async with self._owner.begin() as conn:
            await conn.execute(
                text(
                    "insert into auth.users (organization_id, id, email, name, password_hash, role, timezone) "
                    "values (:org, :id, :email, 'Test', 'x', :role, :tz)"
                ),
                {"org": org, "id": user, "email": f"{user}@example.com", "role": role, "tz": timezone},
            )
        token = self._tokens.user(org=org, sub=user, role=role)
        return Person(org, user, timezone, role, token)

    async def session(
        self,
        person: Person,
        start: datetime,
        end: datetime | None = None,
        last_activity_at: datetime | None = None,
        *,
        idle_since: datetime | None = None,
        received_at: datetime | None = None,
    ) -> Session:
        """A session whose latest event is stamped ``last_activity_at``: an active one,
        received then, unless ``idle_since`` names the last active input (idle events were
        reported after it) or ``received_at`` when activity last arrived."""
        sid = str(uuid.uuid4())
        async with self._owner.begin() as conn:
            await conn.execute(
                text(
                    "insert into sessions.work_sessions (organization_id, id, user_id, start_time, end_time, status, "
                    " last_activity_at, last_active_at, last_received_at) "
                    "values (:org, :id, :user, :start, :end, :status, :last, :active, :received)"
                ),
                {
                    "org": person.org,
                    "id": sid,
                    "user": person.id,
                    "start": start,
                    "end": end,
                    "status": "active" if end is None else "stopped",
                    "last": last_activity_at,
                    "active": idle_since or last_activity_at,
                    "received": received_at or last_activity_at,
                },
            )
        return Session(person.org, sid, person.id, start, end, last_activity_at)

    async def stop(self, session: Session, end: datetime) -> None:
        async with self._owner.begin() as conn:
            await conn.execute(
                text("update sessions.work_sessions set end_time = :end, status = 'stopped' where id = :id"),
                {"end": end, "id": session.id},
            )

    async def reports_idle(self, session: Session, idle_since: datetime, until: datetime) -> None:
        """The session's agent reported idle events up to ``until``; the last active input was at ``idle_since``."""
        async with self._owner.begin() as conn:
            await conn.execute(
                text(
                    "update sessions.work_sessions set last_activity_at = :until, last_active_at = :since, "
                    "last_received_at = :until where id = :id"
                ),
                {"until": until, "since": idle_since, "id": session.id},
            )

    async def touch(self, session: Session, last_activity_at: datetime) -> None:
        """An active event stamped and received at ``last_activity_at``."""
        async with self._owner.begin() as conn:
            await conn.execute(
                text(
                    "update sessions.work_sessions set last_activity_at = :at, last_active_at = :at, "
                    "last_received_at = :at where id = :id"
                ),
                {"at": last_activity_at, "id": session.id},
            )

    async def events(self, session: Session, events: list[Event]) -> None:
        async with self._owner.begin() as conn:
            await conn.execute(
                text(
                    'insert into ingest.activity_logs (organization_id, session_id, user_id, "timestamp", '
                    " activity_type, duration_seconds, app_name, client_event_id) "
                    "values (:org, :sid, :user, :at, :kind, :seconds, :app, :cid)"
                ),
                [
                    {
                        "org": session.org,
                        "sid": session.id,
                        "user": session.user,
                        "at": e.at,
                        "kind": e.kind,
                        "seconds": e.seconds,
                        "app": e.app,
                        "cid": uuid.uuid4().hex,
                    }
                    for e in events
                ],
            )

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self._owner.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())


@pytest.fixture(scope="session")
def world(owner_engine: AsyncEngine, tokens: TokenFactory) -> World:
    return World(owner_engine, tokens)


WorldFactory = Callable[[], World]


def every(start: datetime, step: timedelta, count: int) -> list[datetime]:
    return [start + step * i for i in range(count)]
