"""The Team page: members and roles; an invitation's link, handed over, lets the invitee
join and land signed in; a manager cannot invite an admin (auth's rule, shown)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.dashboard.conftest import PASSWORD, Team, invite, log_in, screenshot

pytestmark = pytest.mark.e2e


async def test_members_and_an_invitation_that_works(page: Any, context: Any, team: Team) -> None:
    await log_in(page, team.admin, "/team")
    members = page.locator("#members-table")
    await expect(members.locator(f'[data-user-id="{team.employee.id}"] .role')).to_have_text("employee")
    await expect(members.locator(f'[data-user-id="{team.admin.id}"] .role')).to_have_text("admin")
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Role").select_option("manager")
    await page.get_by_role("button", name="Create invitation").click()
    link = await page.get_by_label("Invite link").input_value()
    assert link.startswith(page.url.split("/team")[0] + "/join#")
    await screenshot(page, "team-1280")

    newcomer = await context.browser.new_context(base_url=page.url.split("/team")[0])
    try:
        joining = await newcomer.new_page()
        await joining.goto(link)
        await expect(joining.get_by_label("Email")).to_have_value(email)
        assert "#" not in joining.url  # the invite left the address bar
        await joining.get_by_label("Name").fill("Nia Newcomer")
        await joining.get_by_label("Password").fill(PASSWORD)
        await joining.get_by_role("button", name="Join").click()
        await joining.wait_for_url("**/live")
        await expect(joining.locator("#who")).to_have_text("Nia Newcomer (manager)")
    finally:
        await newcomer.close()
    await expect(members).to_contain_text("Nia Newcomer")  # USER_REGISTERED reloads the list


async def test_a_manager_cannot_invite_an_admin(page: Any, team: Team, http: httpx.AsyncClient) -> None:
    manager = await invite(http, team.admin, "Max Manager", role="manager")
    await log_in(page, manager, "/team")
    await page.get_by_label("Email").fill(f"x-{uuid.uuid4().hex[:8]}@example.com")
    await page.get_by_label("Role").select_option("admin")
    await page.get_by_role("button", name="Create invitation").click()
    await expect(page.locator("#invite-result [role=alert]")).to_contain_text("403")


async def test_the_agent_policy_editor(page: Any, team: Team, http: httpx.AsyncClient) -> None:
    await log_in(page, team.admin, "/team")
    await expect(page.locator("#agent-policy")).to_contain_text("Version 0")
    await page.get_by_label("Agent silent after (seconds)").fill("300")
    await page.get_by_label("Collect window titles").select_option("no")
    await page.get_by_label("Show the current app on the Live page").select_option("no")
    await page.get_by_role("button", name="Save policy").click()
    await expect(page.locator("#agent-policy [role=status]")).to_have_text("Saved as version 1.")
    stored = (await http.get("/agent/policy", headers=team.admin.headers)).json()
    assert stored["version"] == 1
    assert (stored["defaults"]["agentSilenceSeconds"], stored["defaults"]["collectTitles"]) == (300, False)
    assert stored["defaults"]["shareCurrentApp"] is False
    assert stored["defaults"]["idleThresholdSeconds"] is None  # left empty: inherited
    # Ingest's range, as it says it.
    await page.get_by_label("Agent silent after (seconds)").fill("5")
    await page.get_by_label("Agent silent after (seconds)").evaluate("el => el.form.noValidate = true")
    await page.get_by_role("button", name="Save policy").click()
    await expect(page.locator("#agent-policy [role=alert]")).to_contain_text("agent_silence_seconds")


async def test_an_employee_sees_no_policy_and_no_one_elses_invites(page: Any, team: Team) -> None:
    await log_in(page, team.employee, "/team")
    await expect(page.locator("#agent-policy [role=alert]")).to_contain_text("403")
    await expect(page.locator("#members-table tbody tr")).to_have_count(1)
