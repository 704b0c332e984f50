"""End to end through every process: register, work, record activity through the gateway,
read today's report (live), run the summary job by hand through the scheduler's RunJob:
today still answers the live figures."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tests.support import Mesh, TokenFactory
from workpulse.scheduler.v1 import scheduler_pb2 as pb
from workpulse.scheduler.v1 import scheduler_pb2_grpc

pytestmark = pytest.mark.e2e


async def test_activity_reaches_the_daily_report(mesh: Mesh, http: httpx.AsyncClient, tokens: TokenFactory) -> None:
    r = await http.post(
        "/auth/register",
        json={
            "email": f"{uuid.uuid4().hex}@example.com",
            "password": "long enough password",
            "name": "Ada",
            "organization_name": "Mesh Org",
        },
    )
    assert r.status_code == 201, r.text
    me = r.json()["user"]
    headers = {"authorization": f"Bearer {r.json()['access_token']}"}
    started_at = datetime.now(UTC)
    r = await http.post("/sessions/start", json={}, headers=headers)
    assert r.status_code == 201, r.text
    session_id = r.json()["id"]
    for kind, seconds, app in (("active", 120, "VS Code"), ("active", 60, "Chrome"), ("idle", 30, None)):
        body = {"activityType": kind, "durationSeconds": seconds, **({"appName": app} if app else {})}
        r = await http.post(f"/sessions/{session_id}/activity", json=body, headers=headers)
        assert r.status_code == 201, r.text

    today = datetime.now(UTC).date()

    async def todays_report() -> dict[str, object]:
        r = await http.get("/reports/daily", params={"date": today.isoformat()}, headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        assert body["user_id"] == me["id"] and body["date"] == today.isoformat()
        assert (body["active_seconds"], body["idle_seconds"], body["sessions_count"]) == (180, 30, 1)
        assert body["productivity_score"] == round(100 * 180 / 210, 2)
        worked = body["total_work_seconds"]
        assert isinstance(worked, int) and 0 <= worked <= (datetime.now(UTC) - started_at).total_seconds() + 1
        return body

    await todays_report()  # live, before any summary job ran
    # By hand, as of the coming UTC midnight: today's summary for this (UTC) organization.
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
    as_of = Timestamp()
    as_of.FromDatetime(midnight)
    async with grpc.aio.insecure_channel(mesh.address("scheduler")) as channel:
        reply = await scheduler_pb2_grpc.SchedulerServiceStub(channel).RunJob(
            pb.RunJobRequest(name="daily_summaries", as_of=as_of),
            metadata=(("authorization", f"Bearer {tokens.service('ops')}"),),
            timeout=60,
        )
    assert reply.run.error == "", reply.run.error
    await todays_report()  # a summary stored ahead of time does not replace today's live figures
