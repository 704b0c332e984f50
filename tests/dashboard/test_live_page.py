"""The Live page in a real browser: log in, every member with their state; an agent's
stream and activity show within a second or so; a stop in the API shows; an employee
sees only their own data."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
from playwright.async_api import expect

from tests.dashboard.agent_stream import HeldStream
from tests.dashboard.conftest import Team, log_in, screenshot
from tests.support import Mesh

pytestmark = __import__("pytest").mark.e2e


def row(page: Any, member_id: str) -> Any:
    return page.locator(f"#member-{member_id}")


async def test_log_in_and_see_every_member(page: Any, team: Team) -> None:
    await log_in(page, team.admin)
    await expect(page.get_by_role("heading", name="Live")).to_be_visible()
    await expect(row(page, team.employee.id)).to_contain_text("Eve Employee")
    await expect(row(page, team.employee.id)).to_contain_text("Offline")
    await expect(row(page, team.admin.id)).to_contain_text("Ada Admin")
    await expect(page.locator("#who")).to_have_text("Ada Admin (admin)")
    await screenshot(page, "live-1280")
    await page.set_viewport_size({"width": 390, "height": 844})
    await expect(row(page, team.employee.id)).to_be_visible()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at 390 px ({width} px)"
    await screenshot(page, "live-390")
    assert page.errors == []


async def test_agent_activity_turns_the_member_active_and_a_stop_shows(
    page: Any, team: Team, mesh: Mesh, http: httpx.AsyncClient
) -> None:
    started = await http.post("/sessions/start", json={}, headers=team.employee.headers)
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    await log_in(page, team.admin)
    member = row(page, team.employee.id)
    await expect(member.locator(".elapsed time")).to_have_text(re.compile(r"^0:00:\d\d$"))
    await expect(member.locator(".today")).to_have_text("0 s")
    await expect(page.locator("#connection")).to_have_text(re.compile("^Connected"))

    async with HeldStream(mesh.address("ingest"), team.employee.token) as agent:
        await agent.send(session_id, active=120)
        await expect(member.locator(".state")).to_have_text("Active", timeout=3000)
        await expect(member.locator(".today")).to_have_text("2 min", timeout=3000)
        await expect(member.locator(".app")).to_have_text("editor")
        await expect(member.locator(".last time")).to_have_text(re.compile(r"\d+ s ago"))
        await agent.send(session_id, active=60)
        await expect(member.locator(".today")).to_have_text("3 min", timeout=3000)

        stopped = await http.post(f"/sessions/{session_id}/stop", json={}, headers=team.admin.headers)
        assert stopped.status_code == 200, stopped.text
        await expect(member.locator(".elapsed")).to_have_text("Not working", timeout=3000)
        await expect(member.locator(".today")).to_have_text("3 min")
        await expect(member.locator(".app")).to_have_text("—")
    assert page.errors == []


async def test_the_current_app_shows_only_where_the_policy_shares_it(
    page: Any, team: Team, mesh: Mesh, http: httpx.AsyncClient
) -> None:
    policy = {"defaults": {"shareCurrentApp": False}}
    assert (await http.put("/agent/policy", json=policy, headers=team.admin.headers)).status_code == 200
    started = await http.post("/sessions/start", json={}, headers=team.employee.headers)
    assert started.status_code == 201, started.text
    await log_in(page, team.admin)
    member = row(page, team.employee.id)
    async with HeldStream(mesh.address("ingest"), team.employee.token) as agent:
        await agent.send(started.json()["id"], active=60, app="private-diary")
        await expect(member.locator(".today")).to_have_text("1 min", timeout=3000)
        await expect(member.locator(".state")).to_have_text("Active")
        await expect(member.locator(".app")).to_have_text("—")
    assert "private-diary" not in await page.content()


async def test_an_employee_sees_only_their_own_data(page: Any, team: Team, http: httpx.AsyncClient) -> None:
    await log_in(page, team.employee)
    await expect(page.locator("#own-only")).to_contain_text("you can see only your own data")
    await expect(row(page, team.employee.id)).to_be_visible()
    await expect(page.locator("tbody tr")).to_have_count(1)
    # The fragment of another member: what the services say, as the page shows it.
    fragment = await http.get(f"/ui/live/members/{team.admin.id}", headers=team.employee.headers)
    assert fragment.status_code in (403, 404)
    assert "You can see only your own data" in fragment.text
    # The batched refresh: another member's row is simply not in the answer.
    rows = await http.get(f"/ui/live/rows?ids={team.employee.id},{team.admin.id}", headers=team.employee.headers)
    assert rows.status_code == 200, rows.text
    assert f"member-{team.employee.id}" in rows.text and team.admin.id not in rows.text
    for bad in ("", "?ids=", "?ids=nope", "?ids=" + ",".join(str(uuid.uuid4()) for _ in range(101))):
        refused = await http.get(f"/ui/live/rows{bad}", headers=team.employee.headers)
        assert refused.status_code == 400, (bad, refused.text)
        assert "ids" in refused.text
    for path in (f"/reports/today?userIds={team.admin.id}", f"/reports/today?userIds={team.employee.id},nope"):
        assert (await http.get(path, headers=team.employee.headers)).status_code in (400, 403), path
    own = await http.get("/reports/today", headers=team.employee.headers)
    assert own.status_code == 200 and [s["user_id"] for s in own.json()["summaries"]] == [team.employee.id]
    for path in (f"/users/{team.admin.id}", f"/reports/daily?userId={team.admin.id}"):
        assert (await http.get(path, headers=team.employee.headers)).status_code in (403, 404), path


async def test_a_dropped_connection_resumes_after_its_last_event_and_loses_nothing(
    page: Any, team: Team, mesh: Mesh, http: httpx.AsyncClient
) -> None:
    """The feed drops; while the page reconnects, the member's session stops; the page's
    next connection names the last event it saw, and the stop it missed shows."""
    urls: list[str] = []
    routes: list[Any] = []
    release = asyncio.Event()

    async def through(ws: Any) -> None:
        urls.append(ws.url)
        routes.append(ws)
        if len(urls) > 1:
            await release.wait()  # the reconnection waits until the stop was committed
        ws.connect_to_server()

    await page.route_web_socket(re.compile(r"/ws(\?.*)?$"), through)
    started = await http.post("/sessions/start", json={}, headers=team.employee.headers)
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    await log_in(page, team.admin)
    member = row(page, team.employee.id)
    await expect(page.locator("#connection")).to_have_text(re.compile("^Connected"))
    async with HeldStream(mesh.address("ingest"), team.employee.token) as agent:
        await agent.send(session_id, active=120)
        await expect(member.locator(".state")).to_have_text("Active", timeout=3000)

    await routes[0].close(code=4000, reason="dropped by the test")
    await expect(page.locator("#connection")).to_have_text("Reconnecting…")
    stopped = await http.post(f"/sessions/{session_id}/stop", json={}, headers=team.admin.headers)
    assert stopped.status_code == 200, stopped.text
    await expect(member.locator(".elapsed")).not_to_have_text("Not working")  # nothing told the page yet
    release.set()
    await expect(member.locator(".elapsed")).to_have_text("Not working", timeout=5000)
    await expect(member.locator(".today")).to_have_text("2 min")
    assert len(urls) == 2 and "?after=" in urls[1], urls
    assert page.errors == []
