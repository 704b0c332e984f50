"""Who may call what: jobs and the cross-tenant reporting RPCs are for service identities
only; unknown job names and malformed arguments are INVALID_ARGUMENT."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tests.scheduler.conftest import Rig, World
from tests.support import TokenFactory
from workpulse.auth.v1 import auth_reporting_pb2, auth_reporting_pb2_grpc
from workpulse.ingest.v1 import ingest_reporting_pb2, ingest_reporting_pb2_grpc
from workpulse.scheduler.v1 import scheduler_pb2 as pb
from workpulse.sessions.v1 import sessions_reporting_pb2, sessions_reporting_pb2_grpc


async def test_run_job_rpc(rig: Rig, world: World, tokens: TokenFactory) -> None:
    service = (("authorization", f"Bearer {tokens.service('ops')}"),)
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await rig.stub.RunJob(pb.RunJobRequest(name="weekly_digest"), metadata=service)
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown job 'weekly_digest'" in (unknown.value.details() or "")

    admin = await world.user(await world.organization(), role="admin")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await rig.stub.RunJob(pb.RunJobRequest(name="idle_check"), metadata=admin.md)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

    as_of = Timestamp()
    as_of.FromJsonString("2026-12-02T08:00:00Z")
    reply = await rig.stub.RunJob(pb.RunJobRequest(name="overtime_check", as_of=as_of), metadata=service)
    assert reply.run.job == "overtime_check" and reply.run.slot.ToJsonString() == "2026-12-02T08:00:00Z"
    assert reply.run.error == "" and reply.run.attempts >= 1


async def test_reporting_rpcs_refuse_users(rig: Rig, world: World) -> None:
    admin = await world.user(await world.organization(), role="admin")
    channel = grpc.aio.insecure_channel(rig.reporting_address)
    calls: list[Any] = [
        auth_reporting_pb2_grpc.AuthReportingServiceStub(channel).StreamUserZones(
            auth_reporting_pb2.StreamUserZonesRequest(), metadata=admin.md
        ),
        sessions_reporting_pb2_grpc.SessionsReportingServiceStub(channel).StreamIdleSessions(
            sessions_reporting_pb2.StreamIdleSessionsRequest(default_idle_minutes=5), metadata=admin.md
        ),
        ingest_reporting_pb2_grpc.IngestReportingServiceStub(channel).StreamActivityTotals(
            ingest_reporting_pb2.StreamActivityTotalsRequest(), metadata=admin.md
        ),
    ]
    try:
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                async for _ in call:
                    pass
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
            await ingest_reporting_pb2_grpc.IngestReportingServiceStub(channel).EnsurePartitions(
                ingest_reporting_pb2.EnsurePartitionsRequest()
            )
        assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close()
