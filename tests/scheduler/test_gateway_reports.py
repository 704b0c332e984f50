"""Reports and alerts through the real gateway process (talking to the test's scheduler
server): API.md's shapes, the CSV export, and precise 4xx for bad input and other tenants."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from services.scheduler.domain import DAILY_SUMMARIES, IDLE_CHECK
from tests.scheduler.conftest import Rig, World
from tests.scheduler.test_daily_summaries import busy_day
from tests.support import Mesh, start_mesh

DAILY_FIELDS = {
    "user_id",
    "date",
    "total_work_seconds",
    "active_seconds",
    "idle_seconds",
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


async def test_reports_alerts_and_export(rig: Rig, world: World, http: httpx.AsyncClient) -> None:
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

    # Alerts: the active session (no activity logged in it) is idle at the check.
    now = day.as_of + timedelta(minutes=30)
    await rig.runner().run(IDLE_CHECK, now)
    r = await http.get("/alerts", params={"type": "INACTIVE_ALERT", "acknowledged": "false"}, headers=manager.headers)
    assert r.status_code == 200, r.text
    alerts = [a for a in r.json()["alerts"] if a["user_id"] == worker.id]
    assert len(alerts) == 1 and alerts[0]["session_id"] == day.sessions[3].id
    alert_id = alerts[0]["id"]
    r = await http.get("/alerts", headers=colleague.headers)  # employees see only their own
    assert all(a["user_id"] == colleague.id for a in r.json()["alerts"])
    error(await http.post(f"/alerts/{alert_id}/acknowledge", headers=colleague.headers), 404)
    r = await http.post(f"/alerts/{alert_id}/acknowledge", headers=manager.headers)
    assert r.status_code == 200 and r.json()["acknowledged_by"] == manager.id
    first_ack = r.json()["acknowledged_at"]
    r = await http.post(f"/alerts/{alert_id}/acknowledge", headers=manager.headers)
    assert r.json()["acknowledged_at"] == first_ack  # idempotent
    r = await http.get("/alerts", params={"acknowledged": "false", "userId": worker.id}, headers=manager.headers)
    assert r.json()["alerts"] == []


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
    error(await http.post("/alerts/not-a-uuid/acknowledge", headers=h), 400)
    error(await http.post(f"/alerts/{stranger.id}/acknowledge", headers=h), 404)
    error(await http.put("/alerts/settings", json={"idle_minutes": 0, "overtime_hours": 9}, headers=h), 400)
    error(await http.put("/alerts/settings", json={"idle_minutes": 5, "overtime_hours": 9}, headers=h), 403)
    error(await http.get("/reports/daily"), 401)
