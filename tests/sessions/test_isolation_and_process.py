"""PostgreSQL itself keeps tenants apart (RLS on every sessions table), and the sessions
process starts, serves and stops gracefully on SIGTERM."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.sessions.conftest import Server, UserFactory
from tests.support import start_mesh
from workpulse.db import UnitOfWork, create_engine
from workpulse.sessions.v1 import sessions_pb2 as pb
from workpulse.sessions.v1 import sessions_pb2_grpc

TABLES = ("sessions.work_sessions", "sessions.projects", "sessions.applied_batches", "sessions.outbox")


async def test_runtime_role_sees_only_its_tenant_without_any_where_clause(
    sessions_server: Server,
    make_user: UserFactory,
    database_url: str,
    owner_engine: AsyncEngine,
    service_md: tuple[tuple[str, str], ...],
) -> None:
    ours, theirs = make_user("admin"), make_user("admin")
    for user in (ours, theirs):
        s = (await sessions_server.stub.StartSession(pb.StartSessionRequest(), metadata=user.md)).session
        await sessions_server.stub.CreateProject(pb.CreateProjectRequest(name="P"), metadata=user.md)
        await sessions_server.stub.ApplyActivity(
            pb.ApplyActivityRequest(organization_id=user.org, session_id=s.id, idempotency_key="k", active_seconds=1),
            metadata=service_md,
        )
    # The other tenant has rows of its own in every table (else "none of theirs" proves nothing).
    async with owner_engine.connect() as conn:
        for table in TABLES:
            rows = await conn.execute(
                text(f"select count(*) from {table} where organization_id = :org"), {"org": theirs.org}
            )
            assert rows.scalar_one() > 0, table
    engine = create_engine(database_url, pool_size=1)
    uow = UnitOfWork(engine)
    try:
        for table in TABLES:
            async with uow.tenant(ours.org) as conn:
                orgs = (await conn.execute(text(f"select distinct organization_id::text from {table}"))).scalars().all()
            assert orgs == [ours.org], table
            async with uow.unscoped() as conn:
                assert (await conn.execute(text(f"select count(*) from {table}"))).scalar() == 0, table
        # Writing a row for another tenant is refused by the policy's WITH CHECK.
        with pytest.raises(Exception, match="row-level security"):
            async with uow.tenant(ours.org) as conn:
                await conn.execute(
                    text("insert into sessions.work_sessions (organization_id, user_id) values (:org, :u)"),
                    {"org": theirs.org, "u": str(uuid.uuid4())},
                )
    finally:
        await engine.dispose()


async def test_process_serves_and_exits_cleanly_on_sigterm(
    mesh_env: dict[str, str], tmp_path: Path, make_user: UserFactory
) -> None:
    mesh = start_mesh(mesh_env, tmp_path, only=("sessions",))
    process = mesh.processes["sessions"]
    try:
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = sessions_pb2_grpc.SessionsServiceStub(channel)
            user = make_user()
            reply = await stub.StartSession(pb.StartSessionRequest(), metadata=user.md)
            assert reply.session.status == "active"
        process.signal(signal.SIGTERM)
        assert process.proc is not None
        assert process.proc.wait(20) == 0
    finally:
        mesh.stop()
