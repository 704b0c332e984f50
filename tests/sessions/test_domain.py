"""Unit tests of the sessions domain rules (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.sessions.domain import (
    ActivityDelta,
    PageCursor,
    Viewer,
    WorkSession,
    page_size,
    project_name,
    require_uuid,
)
from workpulse.errors import InvalidArgument


def _session(user_id: str) -> WorkSession:
    now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    return WorkSession(str(uuid.uuid4()), str(uuid.uuid4()), user_id, None, now, None, "active", 60, 5, now, 3)


def test_page_cursor_round_trips_and_rejects_forgeries() -> None:
    cursor = PageCursor(datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC), str(uuid.uuid4()))
    assert PageCursor.decode(cursor.encode()) == cursor
    for forged in ("", "!!!", "bm90LWEtY3Vyc29y", PageCursor(cursor.start_time, "x").encode()):
        with pytest.raises(InvalidArgument) as info:
            PageCursor.decode(forged)
        assert info.value.field == "page_token"


def test_viewer_sees_own_or_organization() -> None:
    session = _session("u1")
    assert Viewer("u1", sees_organization=False).may_see(session)
    assert not Viewer("u2", sees_organization=False).may_see(session)
    assert Viewer("u2", sees_organization=True).may_see(session)


def test_event_payload_carries_the_api_fields() -> None:
    payload = _session("u1").event_payload()
    assert payload["userId"] == "u1" and payload["status"] == "active" and payload["version"] == 3
    assert payload["total_active_seconds"] == 60 and payload["total_idle_seconds"] == 5
    assert payload["startTime"] == "2026-03-01T09:00:00.000000Z" and payload["endTime"] is None
    # The session object the original's clients read as data.session: the REST session's keys.
    assert payload["session"] == {
        "id": payload["sessionId"],
        "user_id": "u1",
        "organization_id": payload["organizationId"],
        "project_id": None,
        "start_time": "2026-03-01T09:00:00.000000Z",
        "end_time": None,
        "status": "active",
        "total_active_seconds": 60,
        "total_idle_seconds": 5,
        "last_activity_at": "2026-03-01T09:00:00.000000Z",
        "version": 3,
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
        ({"active_seconds": -1}, "active_seconds"),
        ({"idle_seconds": 7 * 24 * 3600 + 1}, "idle_seconds"),
        ({"event_count": -1}, "event_count"),
    ],
)
def test_activity_delta_refuses_nonsense(changes: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {
        "organization_id": str(uuid.uuid4()),
        "session_id": str(uuid.uuid4()),
        "idempotency_key": "k",
        "active_seconds": 60,
        "idle_seconds": 0,
        "last_activity_at": None,
        "event_count": 1,
    }
    with pytest.raises(InvalidArgument) as info:
        ActivityDelta(**{**fields, **changes})  # type: ignore[arg-type]
    assert info.value.field == field


def test_small_validators() -> None:
    raw = uuid.uuid4()
    assert require_uuid(str(raw).upper(), "id") == str(raw)
    with pytest.raises(InvalidArgument):
        require_uuid("12", "id")
    assert page_size(0) == 50 and page_size(200) == 200
    with pytest.raises(InvalidArgument):
        page_size(201)
    assert project_name("  Apollo  ") == "Apollo"
    with pytest.raises(InvalidArgument):
        project_name(" \t ")
