"""Time tracking through the whole mesh as processes: the original's load test and mixed
concurrent traffic with resends. After each, the totals invariant holds exactly: per
session, the stored totals equal the sum of the stored events. (Kills of ingest and of
sessions mid-stream: test_handoff_faults.py.)"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.e2e


async def invariant_violations(engine: AsyncEngine, session_ids: list[str]) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                """
                select * from (
                    select s.id::text, s.total_active_seconds as stored_active, s.total_idle_seconds as stored_idle,
                           coalesce(sum(e.duration_seconds) filter (where e.activity_type = 'active'), 0) as active,
                           coalesce(sum(e.duration_seconds) filter (where e.activity_type = 'idle'), 0) as idle
                    from sessions.work_sessions s
                    left join ingest.activity_logs e on e.organization_id = s.organization_id and e.session_id = s.id
                    where s.id = any(cast(:ids as uuid[]))
                    group by s.id, s.total_active_seconds, s.total_idle_seconds
                ) t where stored_active <> active or stored_idle <> idle
                """
            ),
            {"ids": session_ids},
        )
        return [tuple(r) for r in result]


async def stored_totals(engine: AsyncEngine, session_id: str) -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("select total_active_seconds, total_idle_seconds from sessions.work_sessions where id = :id"),
                {"id": session_id},
            )
        ).one()
        return int(row[0]), int(row[1])


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _register(http: httpx.AsyncClient, **body: str) -> dict[str, Any]:
    reply = await http.post(
        "/auth/register",
        json={"email": f"u-{uuid.uuid4().hex[:10]}@example.com", "password": "correct horse", "name": "U", **body},
    )
    assert reply.status_code == 201, reply.text
    found: dict[str, Any] = reply.json()
    return found


async def _start(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    reply = await http.post("/sessions/start", json={}, headers=_bearer(token))
    assert reply.status_code == 201, reply.text
    found: dict[str, Any] = reply.json()
    return found


async def test_original_load_test_hundred_parallel_activities_total_6000(
    http: httpx.AsyncClient, owner_engine: AsyncEngine
) -> None:
    founder = await _register(http, organization_name=f"Load {uuid.uuid4().hex[:6]}")
    token = founder["access_token"]
    session = await _start(http, token)

    async def one() -> httpx.Response:
        return await http.post(
            f"/sessions/{session['id']}/activity",
            json={"activityType": "active", "durationSeconds": 60, "appName": "VS Code", "url": "file:///main.ts"},
            headers=_bearer(token),
        )

    replies = await asyncio.gather(*(one() for _ in range(100)))
    assert [r.status_code for r in replies] == [201] * 100, [r.text for r in replies if r.status_code != 201][:3]
    body = replies[0].json()
    assert set(body) >= {"message", "session"}
    assert set(body["session"]) >= {"id", "total_active_seconds", "total_idle_seconds"}
    assert max(r.json()["session"]["total_active_seconds"] for r in replies) == 6000

    active = await http.get("/sessions/active", headers=_bearer(token))
    assert active.json()[0]["total_active_seconds"] == 6000
    assert await invariant_violations(owner_engine, [session["id"]]) == []


async def _team(http: httpx.AsyncClient, size: int) -> list[str]:
    """Tokens of ``size`` users of one new organization (the founder and invitees)."""
    founder = await _register(http, organization_name=f"Team {uuid.uuid4().hex[:6]}")
    org = founder["user"]["organization_id"]
    tokens = [founder["access_token"]]
    for _ in range(size - 1):
        email = f"m-{uuid.uuid4().hex[:10]}@example.com"
        invite = await http.post("/invites", json={"email": email, "role": "employee"}, headers=_bearer(tokens[0]))
        assert invite.status_code == 201, invite.text
        joined = await http.post(
            "/auth/register",
            json={
                "email": email,
                "password": "correct horse",
                "name": "M",
                "organization_id": org,
                "invite_token": invite.json()["token"],
            },
        )
        assert joined.status_code == 201, joined.text
        tokens.append(joined.json()["access_token"])
    return tokens


def _event(stamp: datetime, rng: random.Random) -> dict[str, Any]:
    return {
        "activityType": rng.choice(["active", "active", "idle"]),
        "durationSeconds": rng.randint(0, 300),
        "appName": rng.choice(["editor", "browser", "terminal"]),
        "timestamp": stamp.isoformat(),
        "clientEventId": uuid.uuid4().hex,
    }


async def test_thousand_mixed_parallel_requests_with_resent_batches_keep_the_invariant(
    http: httpx.AsyncClient, owner_engine: AsyncEngine
) -> None:
    rng = random.Random(7)
    tokens = await _team(http, 5)
    sessions: list[tuple[str, str, datetime]] = []  # (token, session id, when its events are stamped)
    for token in tokens:
        first = await _start(http, token)
        stopped = await http.post(f"/sessions/{first['id']}/stop", json={}, headers=_bearer(token))
        assert stopped.status_code == 200, stopped.text
        # Offline activity uploaded after the stop, stamped inside the stopped session.
        sessions.append((token, first["id"], datetime.fromisoformat(first["start_time"].replace("Z", "+00:00"))))
        second = await _start(http, token)
        sessions.append((token, second["id"], datetime.now(UTC)))

    requests: list[tuple[str, str, dict[str, Any]]] = []
    expected: dict[str, list[int]] = {sid: [0, 0] for _, sid, _ in sessions}
    while len(requests) < 1000:
        token, sid, stamp = rng.choice(sessions)
        if rng.random() < 0.6:
            event = _event(stamp, rng)
            requests.append((token, f"/sessions/{sid}/activity", event))
            events = [event]
        else:
            events = [_event(stamp, rng) for _ in range(rng.randint(1, 20))]
            key = rng.choice(["events", "activities"])
            body = {"sessionId": sid, key: events}
            requests += [(token, "/activity/batch", body), (token, "/activity/batch", body)]  # every batch twice
        for e in events:
            expected[sid][0 if e["activityType"] == "active" else 1] += e["durationSeconds"]
    rng.shuffle(requests)

    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=60, limits=limits) as client:

        async def post(token: str, path: str, body: dict[str, Any]) -> httpx.Response:
            # A well-behaved client resends the same body after a 503 or a dropped connection
            # (the shared database server may run out of connections; a kept-alive connection
            # may close under it): resent events must still count once.
            for attempt in range(6):
                try:
                    reply = await client.post(path, json=body, headers=_bearer(token))
                except httpx.TransportError:
                    if attempt == 5:
                        raise
                else:
                    if reply.status_code != 503:
                        return reply
                await asyncio.sleep(0.2 * 2**attempt)
            return reply

        replies = await asyncio.gather(*(post(t, path, body) for t, path, body in requests))
    failures = [(r.status_code, r.text) for r in replies if r.status_code != 201]
    assert failures == [], failures[:3]

    ids = [sid for _, sid, _ in sessions]
    assert await invariant_violations(owner_engine, ids) == []
    for sid in ids:
        assert await stored_totals(owner_engine, sid) == tuple(expected[sid])
