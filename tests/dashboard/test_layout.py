"""Every page with the keyboard and at both widths: log in without a mouse; no page scrolls
sideways at 390 px or 1280 px; each has its heading, and screenshots are kept."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.dashboard.conftest import PASSWORD, Team, log_in, screenshot

pytestmark = pytest.mark.e2e

PAGES = {"/live": "Live", "/sessions": "Sessions", "/reports": "Reports", "/alerts": "Alerts", "/team": "Team"}


async def test_log_in_with_the_keyboard_alone(page: Any, team: Team) -> None:
    await page.goto("/login")
    await expect(page.get_by_label("Workspace")).to_be_focused()  # autofocus
    await page.keyboard.type(team.admin.workspace)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Email")).to_be_focused()
    await page.keyboard.type(team.admin.email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/live")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Live", exact=True)).to_be_focused()


async def test_a_wrong_password_says_so(page: Any, team: Team) -> None:
    await page.goto("/login")
    await page.get_by_label("Workspace").fill(team.admin.workspace)
    await page.get_by_label("Email").fill(team.admin.email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Workspace, email or password is not right.")


@pytest.mark.parametrize("width", [1280, 390])
async def test_every_page_fits_the_width(page: Any, team: Team, width: int) -> None:
    await page.set_viewport_size({"width": width, "height": 900})
    await log_in(page, team.admin)
    for path, title in PAGES.items():
        await page.goto(path)
        await expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()
        await expect(page.locator(".loading")).to_have_count(0)  # every fragment arrived
        scroll = await page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"{path} scrolls sideways at {width} px ({scroll} px)"
        await screenshot(page, f"{path.strip('/')}-{width}")
    assert page.errors == []
