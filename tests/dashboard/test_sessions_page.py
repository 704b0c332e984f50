"""The Sessions page: a manager stops a member's session; an employee starts and stops
their own; the history filters by member and dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.dashboard.conftest import Team, log_in, screenshot

pytestmark = pytest.mark.e2e


async def test_a_manager_stops_a_members_session(page: Any, team: Team, http: httpx.AsyncClient) -> None:
    started = await http.post("/sessions/start", json={}, headers=team.employee.headers)
    session_id = started.json()["id"]
    await log_in(page, team.admin, "/sessions")
    active = page.locator("#active-sessions")
    row = active.locator(f'[data-session-id="{session_id}"]')
    await expect(row).to_contain_text("Eve Employee")
    await screenshot(page, "sessions-1280")
    await row.get_by_role("button", name="Stop the session of Eve Employee").click()
    await expect(active).to_contain_text("Nobody is working right now")
    answer = await http.get(f"/sessions/{session_id}", headers=team.admin.headers)
    assert answer.json()["status"] == "stopped"
    await expect(page.locator(f'#history [data-session-id="{session_id}"] .status-cell')).to_have_text("Stopped")


async def test_an_employee_starts_and_stops_their_own(page: Any, team: Team, http: httpx.AsyncClient) -> None:
    await log_in(page, team.employee, "/sessions")
    active = page.locator("#active-sessions")
    await expect(active).to_contain_text("Nobody is working right now")
    await page.get_by_role("button", name="Start a session").click()
    await expect(page.locator("#start-result")).to_contain_text("Session started")
    await expect(active.locator("tbody tr")).to_have_count(1)
    await expect(active).to_contain_text("Eve Employee")
    mine = (await http.get("/sessions/active", headers=team.employee.headers)).json()
    assert [s["user_id"] for s in mine] == [team.employee.id]
    # A second start is the service's 409, shown as such.
    await page.get_by_role("button", name="Start a session").click()
    await expect(page.locator("#start-result [role=alert]")).to_contain_text("409")
    await active.get_by_role("button", name="Stop the session of Eve Employee").click()
    await expect(active).to_contain_text("Nobody is working right now")


async def test_history_filters_by_member_and_dates(page: Any, team: Team, http: httpx.AsyncClient) -> None:
    for who in (team.admin, team.employee):
        started = (await http.post("/sessions/start", json={}, headers=who.headers)).json()
        await http.post(f"/sessions/{started['id']}/stop", json={}, headers=who.headers)
    await log_in(page, team.admin, "/sessions")
    history = page.locator("#history")
    await expect(history.locator("tbody tr")).to_have_count(2)
    await page.get_by_label("Member").select_option(label="Eve Employee")
    await page.get_by_role("button", name="Show").click()
    await expect(history.locator("tbody tr")).to_have_count(1)
    await expect(history.locator("tbody tr")).to_contain_text("Eve Employee")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    await page.get_by_label("From").fill(tomorrow)
    await page.get_by_role("button", name="Show").click()
    await expect(history).to_contain_text("No sessions match these filters")
