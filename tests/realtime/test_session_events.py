"""Session events the original's clients rely on, through the whole mesh (real processes):
a stop announced as SESSION_UPDATE "stopped", the on-connect snapshot of the user's active
session, and the session object under ``session``, over /ws and Socket.IO."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import grpc
import httpx
import pytest

from tests.realtime.clients import Received, Recorder, SioListener, WsListener
from tests.support import Mesh, TokenFactory, eventually
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

# docs/API.md: the REST API's session object, carried by every session event as ``session``.
SESSION_KEYS = {
    "id",
    "user_id",
    "organization_id",
    "project_id",
    "start_time",
    "end_time",
    "status",
    "total_active_seconds",
    "total_idle_seconds",
    "last_activity_at",
    "version",
}
INSTANTS = {"start_time", "end_time", "last_activity_at"}


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _ws(mesh: Mesh, token: str, query: str = "") -> str:
    return mesh.gateway_url.replace("http", "ws") + f"/ws?token={token}{query}"


def _same_session(carried: Any, rest: dict[str, Any]) -> None:
    """``carried`` is the session REST returns: same keys, same values, same instants."""
    assert isinstance(carried, dict) and set(carried) == SESSION_KEYS == set(rest), carried
    for key in SESSION_KEYS:
        if key in INSTANTS and rest[key] is not None:
            assert isinstance(carried[key], str) and carried[key].endswith("Z"), (key, carried[key])
            assert datetime.fromisoformat(carried[key]) == datetime.fromisoformat(rest[key]), key
        else:
            assert carried[key] == rest[key], key


async def _work(http: httpx.AsyncClient, token: str, session_id: str, seconds: int) -> None:
    body = {"activityType": "active", "durationSeconds": seconds, "appName": "editor"}
    reply = await http.post(f"/sessions/{session_id}/activity", json=body, headers=_bearer(token))
    assert reply.status_code == 201, reply.text


def _stops(recorder: Recorder) -> list[Received]:
    return [e for e in recorder.of_type("SESSION_UPDATE") if e.data.get("status") == "stopped"]


async def test_a_stop_reaches_websocket_and_socketio_clients_as_session_update_stopped(
    mesh: Mesh, http: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    org, worker, manager = (str(uuid.uuid4()) for _ in range(3))
    worker_token, manager_token = tokens.user(org, worker, "employee"), tokens.user(org, manager, "manager")
    plain = await (await WsListener(_ws(mesh, manager_token)).connect()).started()
    sio = await SioListener(mesh.gateway_url, "SESSION_UPDATE", "SESSION_STOPPED").connect({"token": worker_token})
    started = await http.post("/sessions/start", json={}, headers=_bearer(worker_token))
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    await _work(http, worker_token, session_id, 60)

    async with grpc.aio.insecure_channel(mesh.address("realtime")) as channel:
        realtime = pb_grpc.RealtimeServiceStub(channel)

        async def presence() -> pb.UserPresence | None:
            reply = await realtime.GetPresence(pb.GetPresenceRequest(), metadata=_bearer(manager_token).items())
            return next((u for u in reply.users if u.user_id == worker), None)

        async def working() -> bool:
            found = await presence()
            return found is not None and found.activity == pb.ACTIVITY_ACTIVE and found.session_id == session_id

        await eventually(working, what="the worker active in the session")
        stopped = await http.post(f"/sessions/{session_id}/stop", json={}, headers=_bearer(worker_token))
        assert stopped.status_code == 200, stopped.text
        rest = stopped.json()

        for recorder in (plain.recorder, sio.recorder):
            await recorder.wait(lambda r: bool(_stops(r)) and bool(r.of_type("SESSION_STOPPED")), what="the stop")
            (update,) = _stops(recorder)
            flat = {k: update.data[k] for k in ("sessionId", "userId", "status", "version", "total_active_seconds")}
            assert flat == {
                "sessionId": session_id,
                "userId": worker,
                "status": "stopped",
                "version": rest["version"],
                "total_active_seconds": 60,
            }
            assert update.id and update.data["id"] == update.id  # a stream entry: resumable
            _same_session(update.data["session"], rest)
            (addition,) = recorder.of_type("SESSION_STOPPED")  # kept beside it, same payload
            assert {k: v for k, v in addition.data.items() if k not in ("id", "timestamp")} == {
                k: v for k, v in update.data.items() if k not in ("id", "timestamp")
            }

        async def cleared() -> bool:
            found = await presence()
            return found is not None and found.session_id == "" and found.activity == pb.ACTIVITY_IDLE

        # Presence folds the stopped SESSION_UPDATE: the worker is online, in no session.
        await eventually(cleared, what="the worker's session cleared from presence")
    await plain.close()
    await sio.close()


async def test_a_connecting_client_first_gets_its_active_session(
    mesh: Mesh, http: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    org, worker, manager = (str(uuid.uuid4()) for _ in range(3))
    worker_token, manager_token = tokens.user(org, worker, "employee"), tokens.user(org, manager, "manager")
    boss = await (await WsListener(_ws(mesh, manager_token)).connect()).started()
    started = await http.post("/sessions/start", json={}, headers=_bearer(worker_token))
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    await _work(http, worker_token, session_id, 60)
    await _work(http, worker_token, session_id, 30)
    await boss.recorder.wait(lambda r: len(r.of_type("SESSION_UPDATE")) == 2, what="both activity updates")
    first, latest = boss.recorder.of_type("SESSION_UPDATE")
    current = (await http.get(f"/sessions/{session_id}", headers=_bearer(worker_token))).json()
    assert current["version"] == latest.data["version"]

    # /ws, resuming after the first update: ready, the snapshot, then the missed update.
    plain = await (await WsListener(_ws(mesh, worker_token, f"&after={first.id}")).connect()).started()
    await plain.recorder.wait(lambda r: any(e.id == latest.id for e in r.events), what="the replayed update")
    assert [f["event"] for f in plain.frames[:2]] == ["ready", "SESSION_UPDATE"]
    snapshot = plain.frames[1]
    assert snapshot["id"] is None and snapshot["data"]["id"] is None  # no stream entry: resume unaffected
    assert [e.id for e in plain.recorder.of_type("SESSION_UPDATE")] == ["", latest.id]
    # The snapshot reads exactly as the relayed update of the same state (the SQL builder's).
    assert isinstance(snapshot["data"]["timestamp"], str)
    assert {k: v for k, v in snapshot["data"].items() if k not in ("id", "timestamp")} == {
        k: v for k, v in latest.data.items() if k not in ("id", "timestamp")
    }
    assert snapshot["data"]["total_active_seconds"] == 90 and snapshot["data"]["status"] == "active"
    _same_session(snapshot["data"]["session"], current)

    # Socket.IO: the snapshot is the first event the client gets.
    await plain.close()
    sio = SioListener(mesh.gateway_url, "SESSION_UPDATE", "USER_ONLINE")
    await sio.connect({"token": worker_token})
    await sio.recorder.wait(lambda r: bool(r.of_type("SESSION_UPDATE")), what="the snapshot")
    got = sio.recorder.events[0]
    assert got.type == "SESSION_UPDATE" and got.data["id"] is None and got.data["sessionId"] == session_id
    _same_session(got.data["session"], current)
    await sio.close()

    # A manager's snapshot is their own session only: they have none, so they got none.
    assert [f for f in boss.frames if f["event"] == "SESSION_UPDATE" and f["id"] is None] == []
    await boss.close()
