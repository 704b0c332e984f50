"""The insert's columnar encoding (real PostgreSQL): every column of every kind of event is
stored as given, across sessions of one call; what was new is told apart from what was
stored before; an id chosen by the client conflicts across timestamps, a derived one
does not; text that would split wrongly is refused, never stored shifted."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.domain import NewEvent
from services.ingest.repository import ActivityLogRepository
from workpulse.db import UnitOfWork, create_engine


@pytest.fixture
async def uow(database_url: str) -> AsyncIterator[UnitOfWork]:
    engine = create_engine(database_url, pool_size=1)
    yield UnitOfWork(engine)
    await engine.dispose()


async def _insert(
    uow: UnitOfWork, org: str, rows: list[tuple[str, str, NewEvent]], start: datetime
) -> set[tuple[str, str, datetime]]:
    async with uow.direct(org) as conn:
        return await ActivityLogRepository(conn).insert_new(org, rows, {s: start for s, _, _ in rows})


async def _stored(owner: AsyncEngine, org: str) -> dict[tuple[str, str], tuple[object, ...]]:
    async with owner.connect() as conn:
        found = await conn.execute(
            text(
                'select session_id::text, client_event_id, user_id::text, "timestamp", activity_type, '
                "duration_seconds, app_name, url, screenshot_timestamp, id from ingest.activity_logs "
                "where organization_id = cast(:org as uuid)"
            ),
            {"org": org},
        )
        return {(r[0], r[1]): tuple(r[2:]) for r in found}


async def test_every_column_of_every_kind_of_event_is_stored_as_given_across_sessions(
    uow: UnitOfWork, owner_engine: AsyncEngine
) -> None:
    org, users = str(uuid.uuid4()), [str(uuid.uuid4()), str(uuid.uuid4())]
    sessions = [str(uuid.uuid4()), str(uuid.uuid4())]
    start = datetime.now(UTC).replace(microsecond=123456)
    shot = start + timedelta(seconds=3)
    events = [
        NewEvent("chosen", start, "active", 5, "Editor", None, None, client_chose_id=True),
        NewEvent("any-stamp", start + timedelta(microseconds=1), "idle", 0, None, "https://a/b?c", shot, True, True),
        NewEvent("sha256:derived", start + timedelta(seconds=1), "active", 86_400, "Ünïcode ✓", "", None),
        NewEvent("server:x", start + timedelta(seconds=2), "idle", 7, "", "https://x", None),
    ]
    rows = [(sessions[n % 2], users[n % 2], e) for n, e in enumerate(events)]

    new = await _insert(uow, org, rows, start)

    assert new == {(s, e.client_event_id, e.timestamp) for s, _, e in rows}
    stored = await _stored(owner_engine, org)
    assert {k: v[:-1] for k, v in stored.items()} == {
        (sessions[0], "chosen"): (users[0], start, "active", 5, "Editor", None, None),
        (sessions[1], "any-stamp"): (
            users[1],
            start + timedelta(microseconds=1),
            "idle",
            0,
            None,
            "https://a/b?c",
            shot,
        ),
        (sessions[0], "sha256:derived"): (
            users[0],
            start + timedelta(seconds=1),
            "active",
            86_400,
            "Ünïcode ✓",
            None,
            None,
        ),
        (sessions[1], "server:x"): (users[1], start + timedelta(seconds=2), "idle", 7, None, "https://x", None),
    }
    ids = [v[-1] for v in stored.values()]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, uuid.UUID) and i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)


async def test_a_resend_is_not_new_and_only_a_chosen_id_conflicts_across_timestamps(
    uow: UnitOfWork, owner_engine: AsyncEngine
) -> None:
    org, user, session = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    start = datetime.now(UTC)
    first = [
        (session, user, NewEvent(f"c-{n}", start + timedelta(seconds=n), "active", 1, None, None, None, False, True))
        for n in range(3)
    ] + [(session, user, NewEvent("sha256:d", start, "idle", 2, None, None, None))]
    assert len(await _insert(uow, org, first, start)) == 4

    later = start + timedelta(minutes=1)
    again = [
        first[0],  # the same event: a duplicate
        (session, user, NewEvent("c-1", later, "active", 1, None, None, None, False, True)),  # another timestamp
        (session, user, NewEvent("c-2", later, "active", 1, None, None, None, True, True)),  # any timestamp
        (session, user, NewEvent("sha256:d", later, "idle", 2, None, None, None)),  # derived: another event
        (session, user, NewEvent("c-9", later, "active", 1, None, None, None, False, True)),  # new
    ]
    new = await _insert(uow, org, again, start)

    assert new == {(session, "sha256:d", later), (session, "c-9", later)}
    async with owner_engine.connect() as conn:
        found = await conn.execute(
            text(
                'select client_event_id, "timestamp" from ingest.activity_logs '
                "where organization_id = cast(:org as uuid)"
            ),
            {"org": org},
        )
        stored = sorted((str(r[0]), r[1]) for r in found)
    assert stored == sorted(
        [(e.client_event_id, e.timestamp) for _, _, e in first] + [("sha256:d", later), ("c-9", later)]
    )


@pytest.mark.parametrize("bad", ["a\x1fb", "\x1f"])
async def test_text_holding_the_separator_is_refused_not_stored_shifted(
    uow: UnitOfWork, owner_engine: AsyncEngine, bad: str
) -> None:
    org, user, session = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    start = datetime.now(UTC)
    rows = [
        (session, user, NewEvent("one", start, "active", 1, bad, None, None, False, True)),
        (session, user, NewEvent("two", start, "active", 1, "fine", None, None, False, True)),
    ]
    with pytest.raises(ValueError, match="app_name"):
        await _insert(uow, org, rows, start)
    assert await _stored(owner_engine, org) == {}


async def test_two_rows_of_one_call_with_one_key_are_stored_once(uow: UnitOfWork, owner_engine: AsyncEngine) -> None:
    """A client may choose the id another event of the same commit derived, at its
    timestamp: the two have one key, and the insert stores it once instead of failing
    (failing would fail every write sharing the commit)."""
    org, user, session = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    start = datetime.now(UTC)
    derived = NewEvent("sha256:same", start, "active", 3, None, None, None)
    chosen = NewEvent("sha256:same", start, "active", 4, None, None, None, False, True)
    other = NewEvent("other", start, "idle", 5, None, None, None, False, True)

    new = await _insert(uow, org, [(session, user, derived), (session, user, chosen), (session, user, other)], start)

    assert new == {(session, "sha256:same", start), (session, "other", start)}
    assert {k: v[3] for k, v in (await _stored(owner_engine, org)).items()} == {
        (session, "sha256:same"): 3,
        (session, "other"): 5,
    }
