"""The anchors that tell an idle user from a silent agent: the latest active event moves
only with active time, the receipt with any applied activity, and a resent hand-off moves
neither (as it adds no seconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.sessions.conftest import Server, UserFactory, apply_request, start_session
from workpulse.sessions.v1 import sessions_pb2 as pb

Metadata = tuple[tuple[str, str], ...]
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def _stamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def _anchors(owner: AsyncEngine, session_id: str) -> tuple[datetime | None, datetime | None, datetime | None]:
    async with owner.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select last_activity_at, last_active_at, last_received_at from sessions.work_sessions "
                    "where id = cast(:id as uuid)"
                ),
                {"id": session_id},
            )
        ).one()
    return row[0], row[1], row[2]


async def test_idle_reports_keep_the_agent_heard_but_not_the_user_active(
    sessions_server: Server, make_user: UserFactory, service_md: Metadata, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await start_session(sessions_server, user)
    assert await _anchors(owner_engine, session.id) == (None, None, None)
    stub = sessions_server.stub

    worked = apply_request(user, session.id, "a-1", active=60, last_activity_at=_stamp(T0))
    await stub.ApplyActivity(worked, metadata=service_md)
    last, active, received = await _anchors(owner_engine, session.id)
    assert last == active == T0 and received is not None

    # The agent reports idle: the session is heard from, its user is not active.
    idled = apply_request(
        user, session.id, "i-1", active=0, idle=120, last_activity_at=_stamp(T0 + timedelta(minutes=2))
    )
    await stub.ApplyActivity(idled, metadata=service_md)
    last, active, heard = await _anchors(owner_engine, session.id)
    assert (last, active) == (T0 + timedelta(minutes=2), T0) and heard is not None and heard > received

    # A resent hand-off is recognised: no anchor moves.
    assert (await stub.ApplyActivity(idled, metadata=service_md)).duplicate
    assert await _anchors(owner_engine, session.id) == (last, active, heard)

    # A hand-off naming its latest active event is taken at its word; without one, its
    # active events are as late as its latest event.
    mixed = apply_request(
        user,
        session.id,
        "m-1",
        active=30,
        idle=60,
        last_activity_at=_stamp(T0 + timedelta(minutes=5)),
        last_active_at=_stamp(T0 + timedelta(minutes=3)),
    )
    await stub.ApplyActivity(mixed, metadata=service_md)
    assert (await _anchors(owner_engine, session.id))[:2] == (T0 + timedelta(minutes=5), T0 + timedelta(minutes=3))
    batch = pb.ApplyActivityBatchRequest(
        items=[
            apply_request(
                user, session.id, "b-1", active=10, idle=5, last_activity_at=_stamp(T0 + timedelta(minutes=7))
            )
        ]
    )
    await stub.ApplyActivityBatch(batch, metadata=service_md)
    last, active, batch_heard = await _anchors(owner_engine, session.id)
    assert last == active == T0 + timedelta(minutes=7) and batch_heard is not None and batch_heard > heard
