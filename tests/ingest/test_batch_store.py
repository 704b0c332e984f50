"""Storing one group commit (real PostgreSQL): the same event in two writes of one commit
is stored once and owned by the first write; one hand-off per session with new events,
carrying exactly what was new; a commit of nothing new writes no hand-off."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.batch_store import ActivityStore, ActivityWrite
from services.ingest.domain import NewEvent, SessionWindow
from tests.ingest.conftest import Stack, UserFactory
from workpulse.db import UnitOfWork, create_engine


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ActivityStore]:
    engine = create_engine(database_url, pool_size=2)
    yield ActivityStore(UnitOfWork(engine))
    await engine.dispose()


def _event(cid: str, at: datetime, seconds: int) -> NewEvent:
    return NewEvent(cid, at, "active", seconds, None, None, None)


async def _stored(owner: AsyncEngine, session_id: str) -> list[tuple[str, int]]:
    async with owner.connect() as conn:
        rows = await conn.execute(
            text(
                "select client_event_id, duration_seconds from ingest.activity_logs "
                "where session_id = :sid order by client_event_id"
            ),
            {"sid": session_id},
        )
        return [(str(r[0]), int(r[1])) for r in rows]


async def test_an_event_in_two_writes_of_one_commit_is_stored_once_and_owned_by_the_first(
    store: ActivityStore, stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    start = session.start_time.ToDatetime(tzinfo=UTC)
    window = SessionWindow(user.org, session.id, user.id, start, None)
    at = start + timedelta(seconds=1)
    first = ActivityWrite(window, [_event("a", at, 10), _event("b", at, 20)])
    resend = ActivityWrite(window, [_event("b", at, 20), _event("c", at, 40)])

    batch = await store.store([first, resend])

    assert [[e.client_event_id for e in fresh] for fresh in batch.fresh] == [["a", "b"], ["c"]]
    assert batch.repeated == frozenset({(user.org, session.id)})
    assert [(h.delta.session_id, h.delta.active_seconds, h.delta.event_count) for h in batch.handoffs] == [
        (session.id, 70, 3)
    ]
    assert await _stored(owner_engine, session.id) == [("a", 10), ("b", 20), ("c", 40)]

    again = await store.store([resend])
    assert again.fresh == [[]] and again.handoffs == [] and again.repeated == frozenset({(user.org, session.id)})
    assert await _stored(owner_engine, session.id) == [("a", 10), ("b", 20), ("c", 40)]


async def test_one_hand_off_per_session_with_exactly_its_new_events(
    store: ActivityStore, stack: Stack, make_user: UserFactory
) -> None:
    user = make_user()
    colleague = make_user(org=user.org)
    sessions = [await stack.start(user), await stack.start(colleague)]
    now = datetime.now(UTC)
    writes = [
        ActivityWrite(
            SessionWindow(user.org, s.id, u.id, s.start_time.ToDatetime(tzinfo=UTC), None),
            [_event(f"{s.id}-{n}", now, 5 * (k + 1)) for n in range(3)],
        )
        for k, (s, u) in enumerate(zip(sessions, (user, colleague), strict=True))
    ]
    batch = await store.store(writes)
    assert batch.repeated == frozenset()
    by_session = {
        h.delta.session_id: (h.delta.user_id, h.delta.active_seconds, h.delta.event_count) for h in batch.handoffs
    }
    assert by_session == {sessions[0].id: (user.id, 15, 3), sessions[1].id: (colleague.id, 30, 3)}
    assert len({h.id for h in batch.handoffs}) == 2
    assert uuid.UUID(batch.handoffs[0].delta.organization_id) == uuid.UUID(user.org)


async def test_writes_of_two_organizations_share_a_commit_each_under_its_own_tenant(
    store: ActivityStore, stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    """Each organization's statements run with it as the tenant: its rows are stored under
    it, the same client event id in another organization is another event, and each
    organization gets its own hand-off (row-level security would refuse a row written
    under the other tenant)."""
    users = [make_user(), make_user()]
    sessions = [await stack.start(u) for u in users]
    now = datetime.now(UTC)
    writes = [
        ActivityWrite(
            SessionWindow(u.org, s.id, u.id, s.start_time.ToDatetime(tzinfo=UTC), None),
            [_event("same-id", now, 10 * (k + 1))],
        )
        for k, (s, u) in enumerate(zip(sessions, users, strict=True))
    ]
    batch = await store.store(writes)
    assert [[e.client_event_id for e in fresh] for fresh in batch.fresh] == [["same-id"], ["same-id"]]
    assert sorted((h.delta.organization_id, h.delta.active_seconds) for h in batch.handoffs) == sorted(
        [(users[0].org, 10), (users[1].org, 20)]
    )
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select organization_id::text, session_id::text, duration_seconds from ingest.activity_logs "
                "where session_id = any(cast(:sids as uuid[]))"
            ),
            {"sids": [s.id for s in sessions]},
        )
        assert sorted(tuple(r) for r in rows) == sorted(
            [(users[0].org, sessions[0].id, 10), (users[1].org, sessions[1].id, 20)]
        )
