"""The Alerts page: an idle alert (the scheduler's idle check, run as the tests run jobs)
arrives live and is acknowledged from the page; admins edit the thresholds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from playwright.async_api import expect

from tests.dashboard.conftest import Team, log_in, screenshot
from tests.support import Mesh, TokenFactory
from workpulse.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

pytestmark = pytest.mark.e2e


async def _run_idle_check(mesh: Mesh, tokens: TokenFactory, ahead: timedelta) -> None:
    async with grpc.aio.insecure_channel(mesh.address("scheduler")) as channel:
        as_of = Timestamp()
        as_of.FromDatetime(datetime.now(UTC) + ahead)
        service = (("authorization", f"Bearer {tokens.service('ops')}"),)
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        run = await stub.RunJob(scheduler_pb2.RunJobRequest(name="idle_check", as_of=as_of), metadata=service)
        assert run.run.error == ""


async def test_an_idle_alert_arrives_live_and_is_acknowledged(
    page: Any, team: Team, mesh: Mesh, tokens: TokenFactory, http: httpx.AsyncClient
) -> None:
    limits = {"idle_minutes": 1, "overtime_hours": 9}
    assert (await http.put("/alerts/settings", json=limits, headers=team.admin.headers)).status_code == 200
    session = (await http.post("/sessions/start", json={}, headers=team.employee.headers)).json()
    event = {"activityType": "active", "durationSeconds": 30, "clientEventId": "ui-alert-seed"}
    recorded = await http.post(f"/sessions/{session['id']}/activity", json=event, headers=team.employee.headers)
    assert recorded.status_code in (201, 202), recorded.text

    await log_in(page, team.admin, "/alerts")
    alerts = page.locator("#alerts")
    await expect(alerts).to_contain_text("No open alerts")
    await expect(page.locator("#connection")).to_contain_text("Connected")
    await _run_idle_check(mesh, tokens, timedelta(seconds=90))
    row = alerts.locator("tbody tr")
    await expect(row).to_have_count(1, timeout=5000)
    await expect(row).to_contain_text("Eve Employee")
    await expect(row).to_contain_text("Inactive")
    await screenshot(page, "alerts-1280")
    await row.get_by_role("button", name="Acknowledge the alert of Eve Employee").click()
    await expect(row.locator(".ack")).to_contain_text("Acknowledged by Ada Admin")
    open_ones = (await http.get("/alerts?acknowledged=false", headers=team.admin.headers)).json()["alerts"]
    assert open_ones == []


async def test_an_admin_edits_the_thresholds_and_an_employee_cannot(
    page: Any, team: Team, http: httpx.AsyncClient
) -> None:
    await log_in(page, team.admin, "/alerts")
    await page.get_by_label("Idle minutes before an alert").fill("7")
    await page.get_by_label("Hours of work before an overtime alert").fill("8.5")
    await page.get_by_role("button", name="Save thresholds").click()
    await expect(page.locator("#alert-settings")).to_contain_text("Saved")
    saved = (await http.get("/alerts/settings", headers=team.admin.headers)).json()
    assert (saved["idle_minutes"], saved["overtime_hours"]) == (7, 8.5)
    # Out of range: the rule's message, not a blank form.
    await page.get_by_label("Idle minutes before an alert").fill("0")
    await page.get_by_label("Idle minutes before an alert").evaluate("el => el.form.noValidate = true")
    await page.get_by_role("button", name="Save thresholds").click()
    await expect(page.locator("#alert-settings [role=alert]")).to_contain_text("idle_minutes")

    refused = await http.post(
        "/ui/alerts/settings", content="idle_minutes=3&overtime_hours=9", headers=team.employee.headers
    )
    assert refused.status_code == 403
    assert "You can see only your own data" in refused.text or "403" in refused.text
