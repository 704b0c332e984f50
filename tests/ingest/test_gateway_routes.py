"""The REST contract of activity through the real gateway, sessions and ingest processes:
the original's camelCase bodies, status codes and response shapes (API.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ingest.conftest import User, UserFactory
from tests.support import Mesh, start_mesh


@pytest.fixture(scope="module")
def activity_mesh(mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(
        mesh_env, Path(tmp_path_factory.mktemp("activity-mesh")), only=("sessions", "ingest", "gateway")
    )
    yield running
    running.stop()


@pytest.fixture
async def client(activity_mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=activity_mesh.gateway_url, timeout=30) as http:
        yield http


def _h(user: User) -> dict[str, str]:
    return {"authorization": f"Bearer {user.token}"}


async def _session(client: httpx.AsyncClient, user: User) -> dict[str, Any]:
    started = await client.post("/sessions/start", json={}, headers=_h(user))
    assert started.status_code == 201, started.text
    found: dict[str, Any] = started.json()
    return found


def _error(response: httpx.Response, status: int, mentions: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"statusCode", "message", "timestamp", "path"}
    assert body["statusCode"] == status and mentions in body["message"], body


async def test_one_event_answers_201_with_the_totals_and_a_resend_counts_once(
    client: httpx.AsyncClient, make_user: UserFactory
) -> None:
    user = make_user()
    session = await _session(client, user)
    body = {"activityType": "active", "durationSeconds": 60, "appName": "VS Code", "clientEventId": "evt-1"}
    first = await client.post(f"/sessions/{session['id']}/activity", json=body, headers=_h(user))
    assert first.status_code == 201, first.text
    reply = first.json()
    assert reply["message"] and reply["duplicate"] is False
    assert reply["session"]["id"] == session["id"]
    assert (reply["session"]["total_active_seconds"], reply["session"]["total_idle_seconds"]) == (60, 0)
    again = await client.post(f"/sessions/{session['id']}/activity", json=body, headers=_h(user))
    assert again.status_code == 201 and again.json()["duplicate"] is True
    assert again.json()["session"]["total_active_seconds"] == 60


async def test_a_batch_accepts_events_or_activities_and_reports_each_rejection(
    client: httpx.AsyncClient, make_user: UserFactory
) -> None:
    user = make_user()
    session = await _session(client, user)
    now = datetime.now(UTC)
    events = [
        {"activityType": "active", "durationSeconds": 120, "appName": "Chrome", "timestamp": now.isoformat()},
        {"activityType": "idle", "durationSeconds": 30, "timestamp": (now - timedelta(seconds=1)).isoformat()},
        {"activityType": "idle", "durationSeconds": 30, "timestamp": (now + timedelta(hours=1)).isoformat()},
    ]
    first = await client.post(
        "/activity/batch", json={"sessionId": session["id"], "activities": events}, headers=_h(user)
    )
    assert first.status_code == 201, first.text
    reply = first.json()
    assert (reply["count"], reply["accepted"], reply["duplicates"]) == (2, 2, 0)
    assert [(r["index"], r["reason"]) for r in reply["rejected"]] == [(2, "timestamp_in_future")]
    assert (reply["session"]["total_active_seconds"], reply["session"]["total_idle_seconds"]) == (120, 30)
    again = await client.post("/activity/batch", json={"sessionId": session["id"], "events": events}, headers=_h(user))
    assert again.status_code == 201
    assert (again.json()["count"], again.json()["accepted"], again.json()["duplicates"]) == (2, 0, 2)
    assert again.json()["session"]["total_active_seconds"] == 120

    only_bad = await client.post(
        "/activity/batch", json={"sessionId": session["id"], "events": events[2:]}, headers=_h(user)
    )
    _error(only_bad, 400, "events.0.timestamp: in the future")


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"activityType": "active", "durationSeconds": -1}, "durationSeconds"),
        ({"activityType": "active", "durationSeconds": 86_401}, "durationSeconds"),
        ({"activityType": "active", "durationSeconds": "60"}, "durationSeconds"),
        ({"activityType": "typing", "durationSeconds": 60}, "activityType"),
        ({"durationSeconds": 60}, "activityType"),
        ({"activityType": "active", "durationSeconds": 60, "timestamp": "yesterday"}, "timestamp"),
    ],
)
async def test_a_malformed_event_is_a_400_naming_the_field(
    client: httpx.AsyncClient, make_user: UserFactory, body: dict[str, Any], mentions: str
) -> None:
    user = make_user()
    session = await _session(client, user)
    _error(await client.post(f"/sessions/{session['id']}/activity", json=body, headers=_h(user)), 400, mentions)


async def test_malformed_batches_are_400s(client: httpx.AsyncClient, make_user: UserFactory) -> None:
    user = make_user()
    session = await _session(client, user)
    stamp = datetime.now(UTC).isoformat()
    one = {"activityType": "active", "durationSeconds": 1, "timestamp": stamp}
    cases = [
        (
            {"sessionId": session["id"], "events": [{"activityType": "active", "durationSeconds": 1}]},
            "events.0.timestamp: required",
        ),
        ({"sessionId": session["id"], "events": [one, {**one, "durationSeconds": -5}]}, "events.1.durationSeconds"),
        ({"sessionId": session["id"], "events": [one, {**one, "activityType": "x"}]}, "events.1.activityType"),
        ({"sessionId": session["id"], "events": []}, "events:"),
        ({"sessionId": session["id"]}, "events:"),
        ({"sessionId": session["id"], "events": [one] * 1001}, "events: at most 1000"),
        ({"events": [one]}, "sessionId:"),
        ({"sessionId": "nope", "events": [one]}, "sessionId:"),
        ({"sessionId": 7, "events": [one]}, "sessionId:"),
    ]
    for body, mentions in cases:
        _error(await client.post("/activity/batch", json=body, headers=_h(user)), 400, mentions)
    # None of the refused batches counted anything.
    got = await client.get(f"/sessions/{session['id']}", headers=_h(user))
    assert (got.json()["total_active_seconds"], got.json()["total_idle_seconds"]) == (0, 0)


async def test_someone_elses_session_is_404_and_a_stopped_one_409(
    client: httpx.AsyncClient, make_user: UserFactory
) -> None:
    owner, other = make_user(), make_user()
    session = await _session(client, owner)
    body = {"activityType": "active", "durationSeconds": 60}
    _error(await client.post(f"/sessions/{session['id']}/activity", json=body, headers=_h(other)), 404, "not found")
    _error(await client.post("/sessions/not-a-uuid/activity", json=body, headers=_h(owner)), 400, "session_id:")
    stopped = await client.post(f"/sessions/{session['id']}/stop", json={}, headers=_h(owner))
    assert stopped.status_code == 200
    _error(await client.post(f"/sessions/{session['id']}/activity", json=body, headers=_h(owner)), 409, "stopped")
    unauthenticated = await client.post(f"/sessions/{session['id']}/activity", json=body)
    assert unauthenticated.status_code == 401
