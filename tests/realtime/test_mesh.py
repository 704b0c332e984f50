"""Live events through the whole mesh: real users, real sessions, POST /sessions/:id/activity
committed by the sessions service, relayed by its outbox, fanned out by realtime, and
delivered by the gateway over both browser protocols."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.realtime.clients import Recorder, SioListener, WsListener, publish
from tests.support import Mesh
from workpulse.redisconn import Keys, events_stream

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@dataclass
class Member:
    id: str
    role: str
    token: str


async def _register(http: httpx.AsyncClient, **body: str) -> dict[str, Any]:
    email = body.pop("email", f"rt-{uuid.uuid4().hex[:10]}@example.com")
    reply = await http.post("/auth/register", json={"email": email, "password": PASSWORD, "name": "R", **body})
    assert reply.status_code == 201, reply.text
    found: dict[str, Any] = reply.json()
    return found


async def _organization(http: httpx.AsyncClient) -> tuple[str, list[Member]]:
    """An organization with its admin, a manager and two employees."""
    founder = await _register(http, organization_name=f"RT {uuid.uuid4().hex[:6]}")
    org = founder["user"]["organization_id"]
    members = [Member(founder["user"]["id"], "admin", founder["access_token"])]
    for role in ("manager", "employee", "employee"):
        email = f"rt-{uuid.uuid4().hex[:10]}@example.com"
        invite = await http.post("/invites", json={"email": email, "role": role}, headers=_bearer(members[0].token))
        assert invite.status_code == 201, invite.text
        joined = await _register(http, email=email, organization_id=org, invite_token=invite.json()["token"])
        members.append(Member(joined["user"]["id"], role, joined["access_token"]))
    return org, members


async def _listen(mesh: Mesh, member: Member, use_socketio: bool) -> SioListener | WsListener:
    if use_socketio:
        return await SioListener(mesh.gateway_url, "SESSION_UPDATE", "BARRIER").connect({"token": member.token})
    plain = await WsListener(mesh.gateway_url.replace("http", "ws") + f"/ws?token={member.token}").connect()
    return await plain.started()


async def test_activity_reaches_exactly_its_audience_over_websocket_and_socketio(
    mesh: Mesh, http: httpx.AsyncClient, redis_client: aioredis.Redis, mesh_env: dict[str, str]
) -> None:
    orgs = [await _organization(http), await _organization(http)]
    everyone = [(org, m) for org, members in orgs for m in members]
    # Alternate the protocols so each role is covered by both.
    listeners = {m.id: await _listen(mesh, m, use_socketio=i % 2 == 1) for i, (_, m) in enumerate(everyone)}
    recorders: dict[str, Recorder] = {user: listener.recorder for user, listener in listeners.items()}

    expected: dict[str, list[dict[str, Any]]] = {m.id: [] for _, m in everyone}
    for _, members in orgs:
        for worker in [m for m in members if m.role == "employee"]:
            started = await http.post("/sessions/start", json={}, headers=_bearer(worker.token))
            assert started.status_code == 201, started.text
            session = started.json()
            reply = await http.post(
                f"/sessions/{session['id']}/activity",
                json={"activityType": "active", "durationSeconds": 42, "appName": "editor"},
                headers=_bearer(worker.token),
            )
            assert reply.status_code == 201, reply.text
            totals = reply.json()["session"]
            update = {
                "sessionId": session["id"],
                "userId": worker.id,
                "total_active_seconds": totals["total_active_seconds"],
                "total_idle_seconds": totals["total_idle_seconds"],
                "status": "active",
            }
            for m in members:
                if m.role in ("admin", "manager") or m.id == worker.id:
                    expected[m.id].append(update)

    stream = events_stream(Keys(mesh_env["REDIS_PREFIX"]))
    for org, members in orgs:
        for m in members:
            await publish(redis_client, stream, "BARRIER", org, {"userId": m.id})
    for _, m in everyone:
        await recorders[m.id].wait(lambda r: bool(r.of_type("BARRIER")), timeout=15, what="barrier")

    for _, m in everyone:
        # The activity's update is the last SESSION_UPDATE of each session.
        latest: dict[str, dict[str, Any]] = {}
        for e in recorders[m.id].of_type("SESSION_UPDATE"):
            latest[e.data["sessionId"]] = e.data
        got = [
            {k: d[k] for k in ("sessionId", "userId", "total_active_seconds", "total_idle_seconds", "status")}
            for d in latest.values()
        ]
        assert sorted(got, key=str) == sorted(expected[m.id], key=str), m.role
        for d in latest.values():
            assert isinstance(d["version"], int) and d["id"] and d["timestamp"]
    for listener in listeners.values():
        await listener.close()
