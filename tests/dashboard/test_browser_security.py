"""What a hostile name or an injected script can do in the dashboard: nothing. Names
render as text, the CSP refuses scripts without the response's nonce, and the tokens
stay out of every storage a script can read."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.dashboard.conftest import PASSWORD, invite, log_in, sign_up
from tests.support import Mesh

pytestmark = pytest.mark.e2e

HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_PROJECT = "</script><script>window.__pwned = 1</script>"


async def test_hostile_names_render_as_inert_text(page: Any, http: httpx.AsyncClient) -> None:
    admin = await sign_up(http, name=HOSTILE_NAME)
    member = await invite(http, admin, "Mallory")
    project = await http.post("/projects", json={"name": HOSTILE_PROJECT}, headers=admin.headers)
    assert project.status_code == 201, project.text
    started = await http.post("/sessions/start", json={"project_id": project.json()["id"]}, headers=member.headers)
    assert started.status_code == 201, started.text
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    await log_in(page, admin)
    await expect(page.locator(f"#member-{admin.id} .name")).to_have_text(HOSTILE_NAME)
    await expect(page.locator(f"#member-{member.id} .project")).to_have_text(HOSTILE_PROJECT)
    await expect(page.locator("#who")).to_have_text(f"{HOSTILE_NAME} (admin)")
    await page.goto("/sessions")
    await expect(page.locator(f'#history [data-session-id="{started.json()["id"]}"]')).to_contain_text(HOSTILE_PROJECT)
    assert await page.locator("main img").count() == 0
    assert await page.evaluate("window.__pwned") is None
    assert dialogs == []
    assert page.errors == []


async def test_the_csp_blocks_an_injected_inline_script(page: Any, http: httpx.AsyncClient) -> None:
    admin = await sign_up(http)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    await log_in(page, admin)
    await expect(page.locator(f"#member-{admin.id}")).to_be_visible()
    violated = await page.evaluate(
        """() => new Promise((resolve) => {
            document.addEventListener("securitypolicyviolation", (e) => resolve(e.violatedDirective), { once: true });
            const script = document.createElement("script");
            script.textContent = "window.__injected = 1";
            document.body.append(script);
            setTimeout(() => resolve(null), 2000);
        })"""
    )
    assert violated is not None and violated.startswith("script-src"), violated
    assert await page.evaluate("window.__injected") is None
    # An injected element with an inline handler does not run either.
    await page.evaluate(
        """() => { const d = document.createElement("div");
                   d.innerHTML = '<img src="data:," onerror="window.__handler = 1">';
                   document.body.append(d); }"""
    )
    await page.wait_for_timeout(300)
    assert await page.evaluate("window.__handler") is None
    assert any("Content Security Policy" in line for line in console), console


async def test_the_tokens_never_reach_script_readable_storage(
    page: Any, context: Any, mesh: Mesh, http: httpx.AsyncClient
) -> None:
    admin = await sign_up(http)
    await log_in(page, admin)
    await expect(page.locator(f"#member-{admin.id}")).to_be_visible()
    await page.goto("/sessions")  # a second page load: the token comes back from the cookie
    await expect(page.locator("#active-sessions")).to_contain_text("Nobody is working right now")
    stored = await page.evaluate(
        """() => ({
            local: Object.keys(localStorage).map((k) => k + "=" + localStorage.getItem(k)),
            session: Object.keys(sessionStorage).map((k) => k + "=" + sessionStorage.getItem(k)),
            cookie: document.cookie,
        })"""
    )
    assert stored["local"] == [] and stored["cookie"] == ""
    # htmx remembers the page's path there (sessionStorage), and nothing else is written.
    assert all(entry.startswith("htmx-current-path-for-history=/") for entry in stored["session"]), stored
    cookies = await context.cookies()
    assert [c["name"] for c in cookies] == ["wp_refresh"]
    refresh = cookies[0]
    assert refresh["httpOnly"] is True
    assert refresh["sameSite"] == "Strict"
    assert refresh["path"] == "/ui/session"
    # The cookie is the refresh token (it works once, on auth's own endpoint), never an access token.
    assert (await http.get("/me", headers={"authorization": f"Bearer {refresh['value']}"})).status_code == 401

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/login")
    assert await context.cookies() == []
    assert (await http.post("/auth/refresh", json={"refresh_token": refresh["value"]})).status_code == 401
    await page.goto("/live")
    await page.wait_for_url("**/login?next=*")
    await expect(page.get_by_label("Password")).to_be_visible()
    assert PASSWORD  # signing in again needs the password: nothing else was kept


async def test_tabs_opened_at_once_all_stay_signed_in(page: Any, context: Any, http: httpx.AsyncClient) -> None:
    """Each page load rotates the refresh token, and a spent one revokes the log-in: tabs
    loading together must take turns, not log each other out."""
    admin = await sign_up(http)
    await log_in(page, admin)

    async def slow_refresh(route: Any) -> None:  # answers arrive late: the tabs' refreshes overlap
        answer = await route.fetch()
        await asyncio.sleep(0.3)
        await route.fulfill(response=answer)

    await context.route("**/ui/session/refresh", slow_refresh)
    tabs = [await context.new_page() for _ in range(3)]
    await asyncio.gather(*(tab.goto(path) for tab, path in zip(tabs, ("/live", "/sessions", "/alerts"), strict=True)))
    for tab in tabs:
        await tab.locator("body[data-ready=true]").wait_for(state="attached")
        assert "/login" not in tab.url
    await page.reload()
    await page.locator("body[data-ready=true]").wait_for(state="attached")
    await expect(page.locator(f"#member-{admin.id}")).to_be_visible()
