"""Issue 10, the gRPC side of "no input gives a 5xx": a service called directly (no gateway
in front) refuses text the database cannot hold as INVALID_ARGUMENT naming the field,
only after it knows the caller; a streamed event with such text is rejected alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import pytest

from tests.support import Mesh, TokenFactory
from workpulse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from workpulse.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from workpulse.sessions.v1 import sessions_pb2, sessions_pb2_grpc


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_a_unary_request_with_a_control_character_is_invalid_argument_naming_the_field(
    mesh: Mesh, tokens: TokenFactory
) -> None:
    admin = tokens.user(role="admin")
    async with grpc.aio.insecure_channel(mesh.address("sessions")) as ch:
        stub = sessions_pb2_grpc.SessionsServiceStub(ch)
        for name, description in (("a\x00b", ""), ("fine", "line\nbreak is fine but \x1b is not")):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreateProject(
                    sessions_pb2.CreateProjectRequest(name=name, description=description), metadata=_auth(admin)
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            field = "name" if "\x00" in name else "description"
            assert refused.value.details() == f"{field}: must not contain control characters"
        # Tab, line feed and carriage return are text.
        created = await stub.CreateProject(
            sessions_pb2.CreateProjectRequest(name="tabs\tok", description="two\r\nlines"), metadata=_auth(admin)
        )
        assert created.project.description == "two\r\nlines"


async def test_an_unauthenticated_caller_learns_nothing_about_its_body(mesh: Mesh) -> None:
    async with grpc.aio.insecure_channel(mesh.address("sessions")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await sessions_pb2_grpc.SessionsServiceStub(ch).CreateProject(
                sessions_pb2.CreateProjectRequest(name="a\x00b")
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_streamed_event_with_a_control_character_is_rejected_alone(mesh: Mesh, tokens: TokenFactory) -> None:
    user = tokens.user(role="employee")
    async with grpc.aio.insecure_channel(mesh.address("sessions")) as ch:
        started = await sessions_pb2_grpc.SessionsServiceStub(ch).StartSession(
            sessions_pb2.StartSessionRequest(), metadata=_auth(user)
        )
    session_id = started.session.id
    now = datetime.now(UTC)

    def event(app: str, event_id: str) -> ingest_pb2.ActivityEvent:
        e = ingest_pb2.ActivityEvent(
            activity_type=ingest_pb2.ACTIVITY_TYPE_ACTIVE, duration_seconds=5, app_name=app, client_event_id=event_id
        )
        e.timestamp.FromDatetime(now)
        return e

    async def batches():  # type: ignore[no-untyped-def]
        yield ingest_pb2.StreamActivityRequest(
            batch_id="b1", session_id=session_id, events=[event("Editor", "ok-1"), event("Ed\x00itor", "bad-1")]
        )

    async with grpc.aio.insecure_channel(mesh.address("ingest")) as ch:
        acks = [a async for a in ingest_pb2_grpc.IngestServiceStub(ch).StreamActivity(batches(), metadata=_auth(user))]
    assert len(acks) == 1
    ack = acks[0]
    assert ack.status_code == 0, ack.status_message
    assert (ack.accepted, ack.rejected) == (1, 1)
    (rejected,) = [r for r in ack.results if r.status == ingest_pb2.EVENT_STATUS_REJECTED]
    assert (rejected.index, rejected.reason) == (1, ingest_pb2.REJECT_REASON_INVALID_TEXT)
    assert rejected.message == "app_name: must not contain control characters"
    assert ack.session.total_active_seconds == 5


@pytest.mark.parametrize("hours", [5e-324, 1e-10, 0.004, float("nan"), float("inf")])
async def test_overtime_hours_the_database_would_store_as_zero_are_invalid_argument(
    mesh: Mesh, tokens: TokenFactory, hours: float
) -> None:
    admin = tokens.user(role="admin")
    async with grpc.aio.insecure_channel(mesh.address("scheduler")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await scheduler_pb2_grpc.SchedulerServiceStub(ch).UpdateAlertSettings(
                scheduler_pb2.UpdateAlertSettingsRequest(idle_minutes=5, overtime_hours=hours), metadata=_auth(admin)
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("overtime_hours")


@pytest.mark.parametrize(
    "request_",
    [
        sessions_pb2.ApplyActivityRequest(organization_id="not-a-uuid", session_id="x\x00", active_seconds=-5),
        sessions_pb2.ApplyActivityRequest(organization_id=str(uuid.uuid4()), session_id=str(uuid.uuid4())),
    ],
    ids=["bad body", "good body"],
)
async def test_a_service_only_rpc_refuses_a_user_before_reading_the_body(
    mesh: Mesh, tokens: TokenFactory, request_: sessions_pb2.ApplyActivityRequest
) -> None:
    """Issue 10: a user calling an internal RPC gets PERMISSION_DENIED whatever its body,
    so it cannot probe what a valid one would be."""
    admin = tokens.user(role="admin")
    async with grpc.aio.insecure_channel(mesh.address("sessions")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await sessions_pb2_grpc.SessionsServiceStub(ch).ApplyActivity(request_, metadata=_auth(admin))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with grpc.aio.insecure_channel(mesh.address("scheduler")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await scheduler_pb2_grpc.SchedulerServiceStub(ch).RunJob(
                scheduler_pb2.RunJobRequest(name="no such job\x00"), metadata=_auth(admin)
            )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
