"""A real alert of organization B is out of reach of organization A: acknowledging it is
NOT_FOUND and leaves it unacknowledged; listing never shows it. Two walls keep it so: the
row-level security of scheduler.alerts and the tenant clause of the alert queries; each
is tested on its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.scheduler import repository
from services.scheduler.domain import IDLE_CHECK
from tests.scheduler.conftest import Person, Rig, World
from tests.support import TokenFactory
from workpulse.db import UnitOfWork
from workpulse.scheduler.v1 import scheduler_pb2 as pb

# Before any session other tests create: the idle check at this instant raises alerts
# for this module's sessions only.
AS_OF = datetime(2020, 1, 6, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class TwoOrganizations:
    ours: Person  # a manager of A
    their_manager: Person
    their_employee: Person
    alert_id: str  # B's alert, raised by the idle check


@pytest.fixture
async def two(rig: Rig, world: World, tokens: TokenFactory) -> AsyncIterator[TwoOrganizations]:
    ours = await world.user(await world.organization(), role="manager")
    theirs = await world.organization()
    manager = await world.user(theirs, role="manager")
    employee = await world.user(theirs)
    idle = AS_OF - timedelta(minutes=20)
    session = await world.session(employee, AS_OF - timedelta(hours=1), last_activity_at=AS_OF, idle_since=idle)
    as_of = Timestamp()
    as_of.FromDatetime(AS_OF)
    service = (("authorization", f"Bearer {tokens.service('ops')}"),)
    run = (await rig.stub.RunJob(pb.RunJobRequest(name=IDLE_CHECK, as_of=as_of), metadata=service)).run
    assert run.error == ""
    rows = await world.rows("select id::text from scheduler.alerts where session_id = :sid", sid=session.id)
    assert len(rows) == 1
    yield TwoOrganizations(ours, manager, employee, rows[0][0])
    await world.stop(session, AS_OF)  # no idle session left behind for other tests' checks


async def acknowledgement_of(world: World, alert_id: str) -> tuple[object, object]:
    rows = await world.rows(
        "select acknowledged_by::text, acknowledged_at from scheduler.alerts where id = :id", id=alert_id
    )
    return rows[0][0], rows[0][1]


async def test_another_organizations_alert_cannot_be_acknowledged_nor_listed(
    rig: Rig, world: World, two: TwoOrganizations
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await rig.stub.AcknowledgeAlert(pb.AcknowledgeAlertRequest(alert_id=two.alert_id), metadata=two.ours.md)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "alert not found"
    assert await acknowledgement_of(world, two.alert_id) == (None, None)
    for user_id in ("", two.their_employee.id):
        listed = await rig.stub.ListAlerts(pb.ListAlertsRequest(user_id=user_id), metadata=two.ours.md)
        assert two.alert_id not in {a.id for a in listed.alerts}
    # The control: the id is real, and its own organization acknowledges it.
    mine = await rig.stub.AcknowledgeAlert(
        pb.AcknowledgeAlertRequest(alert_id=two.alert_id), metadata=two.their_manager.md
    )
    assert mine.alert.acknowledged_by == two.their_manager.id
    assert (await acknowledgement_of(world, two.alert_id))[0] == two.their_manager.id


async def test_the_alert_queries_keep_to_the_tenant_even_where_row_level_security_does_not_apply(
    rig: Rig, world: World, two: TwoOrganizations
) -> None:
    # The maintenance role's policies see every tenant: here only the queries' own tenant
    # clause stands between A's transaction and B's alert.
    async with UnitOfWork(rig.maintenance).tenant(two.ours.org) as conn:
        assert await repository.get_alert(conn, two.alert_id) is None
        assert await repository.acknowledge_alert(conn, two.alert_id, two.ours.id) is None
    assert await acknowledgement_of(world, two.alert_id) == (None, None)
    async with UnitOfWork(rig.maintenance).tenant(two.their_manager.org) as conn:
        found = await repository.get_alert(conn, two.alert_id)
    assert found is not None and found.organization_id == two.their_manager.org
