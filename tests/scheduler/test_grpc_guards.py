"""Who may call what: jobs and the cross-tenant reporting RPCs are for service identities
only; unknown job names and malformed arguments are INVALID_ARGUMENT.

The service-only RPCs come from the generated descriptors (every RPC of every reporting
service, plus RunJob): a new one fails the suite until it has a request here, and then it
is called with users' tokens (refused) and a service's (served)."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

import workpulse
from tests.scheduler.conftest import Event, Person, Rig, World
from tests.support import TokenFactory
from workpulse.auth.v1 import auth_reporting_pb2
from workpulse.ingest.v1 import ingest_reporting_pb2
from workpulse.scheduler.v1 import scheduler_pb2 as pb
from workpulse.sessions.v1 import sessions_reporting_pb2


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


def _service_only_methods() -> dict[str, Any]:
    """Every RPC of every reporting service in the generated stubs, plus the other RPCs
    reserved to service identities: ``/package.Service/Method`` -> method descriptor."""
    found: dict[str, Any] = {}
    for info in pkgutil.walk_packages(workpulse.__path__, "workpulse."):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(info.name)
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                if "Reporting" in service.name or path in OTHER_SERVICE_ONLY:
                    found[path] = method
    return found


OTHER_SERVICE_ONLY = {"/workpulse.scheduler.v1.SchedulerService/RunJob"}
DAY = datetime(2020, 2, 3, tzinfo=UTC)


def _stamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


@dataclass(frozen=True)
class Tenant:
    """An organization with a user who worked an hour on DAY, 40 minutes of it active."""

    admin: Person
    worker: Person


def _requests(t: Tenant) -> dict[str, Message]:
    """A request per service-only RPC, asking for the tenant's data where it can."""
    window: dict[str, Any] = {"organization_id": t.worker.org, "user_id": t.worker.id}
    window.update(start=_stamp(DAY), end=_stamp(DAY + timedelta(days=1)))
    return {
        "/workpulse.auth.v1.AuthReportingService/StreamUserZones": auth_reporting_pb2.StreamUserZonesRequest(),
        "/workpulse.sessions.v1.SessionsReportingService/StreamWorkTotals": (
            sessions_reporting_pb2.StreamWorkTotalsRequest(windows=[sessions_reporting_pb2.UserWindow(**window)])
        ),
        "/workpulse.sessions.v1.SessionsReportingService/StreamIdleSessions": (
            sessions_reporting_pb2.StreamIdleSessionsRequest(default_idle_minutes=5, as_of=_stamp(DAY))
        ),
        "/workpulse.ingest.v1.IngestReportingService/StreamActivityTotals": (
            ingest_reporting_pb2.StreamActivityTotalsRequest(windows=[ingest_reporting_pb2.UserWindow(**window)])
        ),
        "/workpulse.ingest.v1.IngestReportingService/EnsurePartitions": (
            ingest_reporting_pb2.EnsurePartitionsRequest(days_ahead=1)
        ),
        "/workpulse.scheduler.v1.SchedulerService/RunJob": pb.RunJobRequest(name="idle_check", as_of=_stamp(DAY)),
    }


def _served_to_a_service(t: Tenant) -> dict[str, list[str]]:
    """What a service finds in the replies of the RPCs that return the tenant's data."""
    return {
        "/workpulse.auth.v1.AuthReportingService/StreamUserZones": [t.worker.id],
        "/workpulse.sessions.v1.SessionsReportingService/StreamWorkTotals": [t.worker.id, "worked_seconds: 3600"],
        "/workpulse.ingest.v1.IngestReportingService/StreamActivityTotals": [t.worker.id, "active_seconds: 2400"],
    }


@pytest.fixture
async def tenant(world: World) -> Tenant:
    org = await world.organization()
    worker = await world.user(org)
    session = await world.session(worker, DAY + timedelta(hours=9), DAY + timedelta(hours=10))
    await world.events(session, [Event(DAY + timedelta(hours=9, minutes=i), "active", 60, "Editor") for i in range(40)])
    return Tenant(await world.user(org, role="admin"), worker)


async def _call(rig: Rig, path: str, request: Message, metadata: tuple[tuple[str, str], ...] | None) -> list[Message]:
    method = _service_only_methods()[path]
    output = message_factory.GetMessageClass(method.output_type)
    address = rig.scheduler_address if "SchedulerService" in path else rig.reporting_address
    async with grpc.aio.insecure_channel(address) as channel:
        if method.server_streaming:
            stream = channel.unary_stream(path, type(request).SerializeToString, output.FromString)
            return [reply async for reply in stream(request, metadata=metadata)]
        unary = channel.unary_unary(path, type(request).SerializeToString, output.FromString)
        return [await unary(request, metadata=metadata)]


def test_every_service_only_rpc_has_a_request_here() -> None:
    placeholder = Tenant(*(Person("o", "u", "UTC", "admin", "t"),) * 2)
    assert set(_service_only_methods()) == set(_requests(placeholder))


@pytest.mark.parametrize("path", sorted(_service_only_methods()))
async def test_service_only_rpcs_refuse_users_and_serve_services(
    path: str, rig: Rig, world: World, tokens: TokenFactory, tenant: Tenant
) -> None:
    request = _requests(tenant)[path]
    stranger = await world.user(await world.organization(), role="admin")
    # Admins of the tenant itself and of another one, and nobody at all: refused, no data.
    for caller, code in (
        (tenant.admin.md, grpc.StatusCode.PERMISSION_DENIED),
        (stranger.md, grpc.StatusCode.PERMISSION_DENIED),
        (None, grpc.StatusCode.UNAUTHENTICATED),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _call(rig, path, request, caller)
        assert refused.value.code() == code, (path, caller)
    service = (("authorization", f"Bearer {tokens.service('ops')}"),)
    replies = " ".join(str(r) for r in await _call(rig, path, request, service))
    for expected in _served_to_a_service(tenant).get(path, []):
        assert expected in replies, (path, replies)
