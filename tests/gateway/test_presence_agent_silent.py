"""Agent silence through the whole mesh (real processes): a session started and then not
reported on turns agent_silent for the browsers, live and in the on-connect snapshot of a
user who connects meanwhile, and back when its activity arrives.

The organization's allowance is appended as ingest's AGENT_POLICY_UPDATED would be."""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis.asyncio as aioredis

from tests.realtime.clients import Recorder, SioListener, WsListener, publish
from tests.support import Mesh, TokenFactory
from workpulse.redisconn import Keys, events_stream

pytestmark = pytest.mark.e2e

SILENT, RESUMED = "USER_AGENT_SILENT", "USER_AGENT_RESUMED"


def _ws(mesh: Mesh, token: str) -> str:
    return mesh.gateway_url.replace("http", "ws") + f"/ws?token={token}"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _live(recorder: Recorder, kind: str, user: str) -> list[dict[str, object]]:
    return [e.data for e in recorder.of_type(kind) if e.id and e.data.get("userId") == user]


async def test_a_silent_agent_shows_as_agent_silent_live_and_on_connect(
    mesh: Mesh, mesh_env: dict[str, str], http: httpx.AsyncClient, redis_client: aioredis.Redis, tokens: TokenFactory
) -> None:
    org, worker, manager = (str(uuid.uuid4()) for _ in range(3))
    worker_token, manager_token = tokens.user(org, worker, "employee"), tokens.user(org, manager, "manager")
    stream = events_stream(Keys(mesh_env["REDIS_PREFIX"]))
    boss = await (await WsListener(_ws(mesh, manager_token)).connect()).started()

    async def allow(seconds: int, version: int) -> None:
        payload = {"organizationId": org, "version": version, "agentSilenceSeconds": seconds}
        await publish(redis_client, stream, "AGENT_POLICY_UPDATED", org, payload)

    await allow(1, 1)
    started = await http.post("/sessions/start", json={}, headers=_bearer(worker_token))
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    await boss.recorder.wait(lambda r: bool(_live(r, SILENT, worker)), what="USER_AGENT_SILENT", timeout=15)
    live = _live(boss.recorder, SILENT, worker)[0]
    assert (live["sessionId"], live["activity"], live["agentSilenceSeconds"]) == (session_id, "agent_silent", 1)

    # The user connects while silent: ready, their session, then their agent's silence.
    plain = await (await WsListener(_ws(mesh, worker_token)).connect()).started()
    await plain.recorder.wait(lambda r: bool(r.of_type(SILENT)), what="the silence snapshot")
    assert [f["event"] for f in plain.frames[:3]] == ["ready", "SESSION_UPDATE", SILENT]
    snapshot = plain.frames[2]
    assert snapshot["id"] is None and snapshot["data"]["id"] is None
    same = {k: v for k, v in snapshot["data"].items() if k not in ("id", "timestamp")}
    assert same == {k: v for k, v in live.items() if k not in ("id", "timestamp")}
    await plain.close()
    sio = SioListener(mesh.gateway_url, "SESSION_UPDATE", SILENT)
    await sio.connect({"token": worker_token})
    await sio.recorder.wait(lambda r: bool(r.of_type(SILENT)), what="the Socket.IO silence snapshot")
    assert [e.type for e in sio.recorder.events[:2]] == ["SESSION_UPDATE", SILENT]
    await sio.close()

    # Activity arrives: back, for everyone watching; a longer allowance keeps it so.
    event = {"activityType": "active", "durationSeconds": 30, "appName": "editor"}
    reply = await http.post(f"/sessions/{session_id}/activity", json=event, headers=_bearer(worker_token))
    assert reply.status_code == 201, reply.text
    await boss.recorder.wait(lambda r: bool(_live(r, RESUMED, worker)), what="USER_AGENT_RESUMED", timeout=15)
    back = _live(boss.recorder, RESUMED, worker)[0]
    assert (back["reason"], back["activity"], back["sessionId"]) == ("activity", "active", session_id)
    await allow(600, 2)
    marker = await publish(redis_client, stream, "OVERTIME_ALERT", org, {"userId": worker})
    await boss.recorder.wait(lambda r: any(e.id == marker for e in r.events), what="the policy's turn")
    again = await (await WsListener(_ws(mesh, worker_token)).connect()).started()
    # The snapshot precedes every event: once a later event is in, it was all of it.
    later = await publish(redis_client, stream, "OVERTIME_ALERT", org, {"userId": worker})
    await again.recorder.wait(lambda r: any(e.id == later for e in r.events), what="an event after the snapshot")
    assert [(e.type, e.data["sessionId"]) for e in again.recorder.events if not e.id] == [
        ("SESSION_UPDATE", session_id)
    ]
    await again.close()
    await boss.close()
