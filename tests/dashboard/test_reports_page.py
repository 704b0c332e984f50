"""The Reports page: a member's days over a date range as a table and a uPlot chart, the
CSV export saved from the page, hostile app names as text, and an employee's refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
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

HOSTILE_APP = "</script><script>window.__pwned = 2</script>"


async def _summarize_today(mesh: Mesh, tokens: TokenFactory) -> None:
    """The nightly job by hand, as of the coming UTC midnight (the organization is UTC)."""
    today = datetime.now(UTC).date()
    as_of = Timestamp()
    as_of.FromDatetime(datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1))
    async with grpc.aio.insecure_channel(mesh.address("scheduler")) as channel:
        reply = await scheduler_pb2_grpc.SchedulerServiceStub(channel).RunJob(
            scheduler_pb2.RunJobRequest(name="daily_summaries", as_of=as_of),
            metadata=(("authorization", f"Bearer {tokens.service('ops')}"),),
            timeout=60,
        )
    assert reply.run.error == "", reply.run.error


@pytest.fixture
async def worked(team: Team, mesh: Mesh, tokens: TokenFactory, http: httpx.AsyncClient) -> Team:
    session = (await http.post("/sessions/start", json={}, headers=team.employee.headers)).json()
    for n, (kind, seconds, app) in enumerate(
        (("active", 1800, "editor"), ("active", 600, HOSTILE_APP), ("idle", 600, ""))
    ):
        body = {"activityType": kind, "durationSeconds": seconds, "clientEventId": f"report-{n}"}
        if app:
            body["appName"] = app
        reply = await http.post(f"/sessions/{session['id']}/activity", json=body, headers=team.employee.headers)
        assert reply.status_code in (201, 202), reply.text
    await http.post(f"/sessions/{session['id']}/stop", json={}, headers=team.employee.headers)
    await _summarize_today(mesh, tokens)
    return team


async def test_the_report_chart_and_the_csv_of_a_date_range(page: Any, worked: Team, tmp_path: Path) -> None:
    team = worked
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    await log_in(page, team.admin, "/reports")
    await page.get_by_label("Member").select_option(label="Eve Employee")
    await page.get_by_role("button", name="Show").click()
    today = datetime.now(UTC).date().isoformat()
    table = page.locator("#report-table")
    day = table.locator("tbody tr", has_text=today)
    await expect(day).to_contain_text("40 min")  # active
    await expect(day).to_contain_text("10 min")  # idle
    await expect(day).to_contain_text("80 %")
    await expect(day.locator(".app").filter(has_text="editor")).to_have_count(1)
    await expect(day.locator(".app").filter(has_text=HOSTILE_APP)).to_have_count(1)
    assert await page.evaluate("window.__pwned") is None
    await expect(page.locator("#report-chart .uplot canvas")).to_have_count(1)
    await screenshot(page, "reports-1280")

    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download CSV").click()
    download = await info.value
    start = (datetime.now(UTC).date() - timedelta(days=13)).isoformat()
    assert download.suggested_filename == f"summaries_{start}_{today}.csv"
    saved = tmp_path / "report.csv"
    await download.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0].startswith("date,user_id,")
    assert any(line.startswith(f"{today},{team.employee.id},") for line in lines[1:]), lines
    await expect(page.locator("#csv-status")).to_contain_text("Saved")
    assert violations == []


async def test_an_employee_reads_their_own_report_but_exports_nothing(page: Any, worked: Team) -> None:
    await log_in(page, worked.employee, "/reports")
    await expect(page.locator("#report-user option")).to_have_count(1)
    await expect(page.locator("#report-table")).to_contain_text(datetime.now(UTC).date().isoformat())
    await page.get_by_role("button", name="Download CSV").click()
    await expect(page.locator("#csv-status")).to_contain_text("403")
