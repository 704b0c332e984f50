"""Browser tests' plumbing: Debian's Chromium driven by Playwright (never a downloaded
browser), one browser per module and a fresh context per test; organizations and members
made through the REST API; the log-in as a person does it."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Mesh

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery"
ARTIFACTS = Path(os.environ.get("DASHBOARD_ARTIFACTS", ".data/test/dashboard"))


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    email: str
    role: str
    token: str
    organization_id: str
    workspace: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Team:
    admin: Member
    employee: Member


def _member(body: dict[str, Any], workspace: str) -> Member:
    user = body["user"]
    return Member(
        user["id"], user["name"], user["email"], user["role"], body["access_token"], user["organization_id"], workspace
    )


async def sign_up(http: httpx.AsyncClient, name: str = "Ada Admin") -> Member:
    workspace = f"ui-{uuid.uuid4().hex[:12]}"
    body = {
        "email": f"admin@{workspace}.example.com",
        "password": PASSWORD,
        "name": name,
        "organization_name": f"Org {workspace}",
        "workspace": workspace,
    }
    reply = await http.post("/auth/register", json=body)
    assert reply.status_code == 201, reply.text
    return _member(reply.json(), workspace)


async def invite(http: httpx.AsyncClient, by: Member, name: str, role: str = "employee") -> Member:
    email = f"{uuid.uuid4().hex[:8]}@{by.workspace}.example.com"
    invited = await http.post("/invites", json={"email": email, "role": role}, headers=by.headers)
    assert invited.status_code == 201, invited.text
    body = {
        "email": email,
        "password": PASSWORD,
        "name": name,
        "organization_id": by.organization_id,
        "invite_token": invited.json()["token"],
    }
    joined = await http.post("/auth/register", json=body)
    assert joined.status_code == 201, joined.text
    return _member(joined.json(), by.workspace)


@pytest.fixture
async def team(http: httpx.AsyncClient) -> Team:
    admin = await sign_up(http)
    return Team(admin, await invite(http, admin, "Eve Employee"))


def _chromium_installed() -> bool:
    return CHROMIUM.exists()


def _artifact(name: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return str(ARTIFACTS / f"{name}.png")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not _chromium_installed():
        reason = f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium)"
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="wp-chromium-")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True, env={**os.environ, "HOME": profile}
        )
        yield launched
        await launched.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def context(browser: Any, mesh: Mesh) -> AsyncIterator[Any]:
    fresh = await browser.new_context(base_url=mesh.gateway_url, viewport={"width": 1280, "height": 900})
    fresh.set_default_timeout(10_000)
    yield fresh
    await fresh.close()


@pytest.fixture
async def page(context: Any) -> Any:
    opened = await context.new_page()
    opened.errors = []  # type: ignore[attr-defined]
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))
    return opened


async def log_in(page: Any, who: Member, then: str = "/live") -> None:
    """Signs in through the form, as a person does (labels, not selectors)."""
    await page.goto(f"/login?next={then}")
    await page.get_by_label("Workspace").fill(who.workspace)
    await page.get_by_label("Email").fill(who.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"**{then}")
    await page.locator("body[data-ready=true]").wait_for(state="attached")  # holds its token


async def screenshot(page: Any, name: str) -> None:
    await page.screenshot(path=_artifact(name), full_page=True)
