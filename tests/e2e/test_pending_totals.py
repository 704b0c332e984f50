"""Issue 11: a resend after an error must not count twice. When ingest has stored a
client's events but sessions cannot apply their totals (sessions killed), the answer is
202 Accepted with the totals pending, not an error inviting a resend; once sessions is
back the hand-off completes, and the stored events equal the requests the client made."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Mesh, TokenFactory, start_mesh

pytestmark = pytest.mark.e2e

EVENT = {"activityType": "active", "durationSeconds": 10, "appName": "Editor"}


@pytest.fixture
def pending_mesh(mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(
        mesh_env, Path(tmp_path_factory.mktemp("pending-totals")), only=("sessions", "ingest", "gateway")
    )
    yield running
    running.stop()


async def _stored(owner_engine: AsyncEngine, session_id: str) -> tuple[int, int]:
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select count(*), coalesce(sum(duration_seconds), 0) from ingest.activity_logs "
                    "where session_id = cast(:sid as uuid)"
                ),
                {"sid": session_id},
            )
        ).one()
    return int(row[0]), int(row[1])


async def test_events_stored_while_sessions_is_down_are_202_and_counted_once(
    pending_mesh: Mesh, tokens: TokenFactory, owner_engine: AsyncEngine
) -> None:
    headers = {"authorization": f"Bearer {tokens.user(role='employee', ttl=3600)}"}
    async with httpx.AsyncClient(base_url=pending_mesh.gateway_url, timeout=30) as http:
        started = await http.post("/sessions/start", json={}, headers=headers)
        assert started.status_code == 201, started.text
        sid = started.json()["id"]
        url = f"/sessions/{sid}/activity"
        first = await http.post(url, json=EVENT, headers=headers)  # also caches the window in ingest
        assert first.status_code == 201, first.text

        pending_mesh.processes["sessions"].kill()
        replies: list[httpx.Response] = []
        for _ in range(3):  # the original's client: no clientEventId, no timestamp
            replies.append(await http.post(url, json=EVENT, headers=headers))
        batch = await http.post(
            "/activity/batch",
            json={
                "sessionId": sid,
                "events": [{**EVENT, "appName": "Batch", "timestamp": first.json()["session"]["last_activity_at"]}],
            },
            headers=headers,
        )
        bodies: list[dict[str, Any]] = [r.json() for r in (*replies, batch)]
        assert [r.status_code for r in (*replies, batch)] == [202, 202, 202, 202], bodies
        assert all(b["totals_pending"] is True and b["session"] is None for b in bodies), bodies

        # Nothing a client did invites a resend, so the store holds exactly what was sent.
        assert await _stored(owner_engine, sid) == (5, 50)

        await asyncio.to_thread(pending_mesh.processes["sessions"].restart)
        deadline = time.monotonic() + 30
        while True:
            reply = await http.get(f"/sessions/{sid}", headers=headers)
            if reply.status_code == 200 and reply.json()["total_active_seconds"] == 50:
                break
            assert time.monotonic() < deadline, f"hand-offs not completed: {reply.text}"
            await asyncio.sleep(0.5)
        assert await _stored(owner_engine, sid) == (5, 50)
        after = await http.post(url, json=EVENT, headers=headers)
        assert after.status_code == 201 and after.json()["session"]["total_active_seconds"] == 60, after.text
