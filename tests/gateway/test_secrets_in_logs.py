"""No secret reaches a log: the whole mesh as processes at INFO with the gateway's access
log on, every way a secret travels (bodies, the Authorization header, ``/ws?token=``,
Socket.IO's auth and query), then every log file of the run is searched for each secret."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from tests.realtime.clients import WsListener, polite_or_dropped
from tests.support import Mesh, TokenFactory, start_mesh

pytestmark = pytest.mark.e2e

PASSWORD = "hunter2-" + uuid.uuid4().hex
JOINER_PASSWORD = "swordfish-" + uuid.uuid4().hex


@pytest.fixture
def logged_mesh(mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, Path]]:
    """A mesh of its own, so its log directory holds exactly this run's lines; at INFO with
    the access log on, so a URL carrying a secret would be written."""
    log_dir = tmp_path_factory.mktemp("secret-logs")
    env = {
        **mesh_env,
        "LOG_LEVEL": "INFO",
        "GATEWAY_ACCESS_LOG": "true",
        "REDIS_PREFIX": f"{mesh_env['REDIS_PREFIX']}:logs{uuid.uuid4().hex[:6]}",
    }
    mesh = start_mesh(env, log_dir)
    try:
        yield mesh, log_dir
    finally:
        mesh.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _exercise(mesh: Mesh, tokens: TokenFactory) -> list[str]:
    """Every flow that carries a secret; returns the secrets it used."""
    secrets = [PASSWORD, JOINER_PASSWORD]
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as http:
        email = f"logs-{uuid.uuid4().hex[:10]}@example.com"
        signed_up = await http.post(
            "/auth/register",
            json={
                "email": email,
                "password": PASSWORD,
                "name": "L",
                "organization_name": f"Logs {uuid.uuid4().hex[:6]}",
            },
        )
        assert signed_up.status_code == 201, signed_up.text
        admin = signed_up.json()
        org = admin["user"]["organization_id"]
        secrets += [admin["access_token"], admin["refresh_token"]]

        logged_in = await http.post("/auth/login", json={"email": email, "password": PASSWORD, "organization_id": org})
        assert logged_in.status_code == 200, logged_in.text
        secrets += [logged_in.json()["access_token"], logged_in.json()["refresh_token"]]
        wrong = await http.post(
            "/auth/login", json={"email": email, "password": PASSWORD + "-wrong", "organization_id": org}
        )
        assert wrong.status_code == 401
        secrets.append(PASSWORD + "-wrong")

        refreshed = await http.post("/auth/refresh", json={"refresh_token": logged_in.json()["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        secrets += [refreshed.json()["access_token"], refreshed.json()["refresh_token"]]
        # A refresh token reused after rotation is refused (and logged as a failed call).
        reused = await http.post("/auth/refresh", json={"refresh_token": logged_in.json()["refresh_token"]})
        assert reused.status_code == 401

        joiner_email = f"logs-{uuid.uuid4().hex[:10]}@example.com"
        invite = await http.post(
            "/invites", json={"email": joiner_email, "role": "employee"}, headers=_bearer(admin["access_token"])
        )
        assert invite.status_code == 201, invite.text
        invite_token = invite.json()["token"]
        secrets.append(invite_token)
        joined = await http.post(
            "/auth/register",
            json={
                "email": joiner_email,
                "password": JOINER_PASSWORD,
                "name": "J",
                "organization_id": org,
                "invite_token": invite_token,
            },
        )
        assert joined.status_code == 201, joined.text
        joiner = joined.json()
        secrets += [joiner["access_token"], joiner["refresh_token"]]

        # Clients that put secrets where they do not belong: the query string of REST calls.
        misplaced = await http.get("/me", params={"access_token": joiner["access_token"], "password": PASSWORD})
        assert misplaced.status_code == 401

        bad = "not-a-token-" + uuid.uuid4().hex
        forged = tokens.user(org, sub=joiner["user"]["id"], iss="someone-else")
        secrets += [bad, forged]
        for wrong_token in (bad, forged):
            refused = await http.get("/me", headers=_bearer(wrong_token))
            assert refused.status_code == 401, refused.text

        logged_out = await http.post("/auth/logout", json={"refresh_token": joiner["refresh_token"]})
        assert logged_out.status_code == 204, logged_out.text

    ws_base = mesh.gateway_url.replace("http", "ws")
    plain = await WsListener(f"{ws_base}/ws?token={joiner['access_token']}").connect()
    await plain.started()
    await plain.close()
    subprotocol = await WsListener(f"{ws_base}/ws").connect(
        subprotocols=["workpulse.v1", f"bearer.{admin['access_token']}"]
    )
    await subprotocol.started()
    await subprotocol.close()
    refused_ws = await WsListener(f"{ws_base}/ws?token={bad}").connect()
    code, _ = await refused_ws.closed()
    assert code == 4401
    await refused_ws.close()

    # Socket.IO over both transports, the token in auth and (as some clients do) the query.
    for transports in (["websocket"], ["polling"]):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(
            f"{mesh.gateway_url}?token={refreshed.json()['access_token']}",
            auth={"token": refreshed.json()["access_token"]},
            transports=transports,
            wait_timeout=10,
        )
        await polite_or_dropped(client, transports)
    refused_sio = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused_sio.connect(mesh.gateway_url, auth={"token": bad}, transports=["websocket"], wait_timeout=10)
    return secrets


def _fragments(secret: str) -> list[str]:
    """The secret, and for a JWT its signature alone (a log that cut the token up would
    still hold that)."""
    parts = secret.split(".")
    return [secret, parts[2]] if len(parts) == 3 and len(parts[2]) >= 16 else [secret]


async def test_no_secret_reaches_any_log_file(logged_mesh: tuple[Mesh, Path], tokens: TokenFactory) -> None:
    mesh, log_dir = logged_mesh
    secrets = await _exercise(mesh, tokens)
    mesh.stop()  # every process flushes and logs its shutdown too

    files = sorted(log_dir.glob("*.log"))
    assert {f.stem for f in files} >= {"gateway", "auth", "sessions", "ingest", "realtime", "scheduler"}
    leaks: list[tuple[str, int, str]] = []
    for path in files:
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for secret in secrets:
                if any(fragment in line for fragment in _fragments(secret)):
                    leaks.append((path.name, number, line[:300]))
    assert not leaks, "secrets in logs:\n" + "\n".join(f"{f}:{n}: {line}" for f, n, line in leaks)

    # The run did log URLs at INFO (else the search above proves nothing): the access log's
    # REST lines and uvicorn's WebSocket lines, with the secrets' values masked.
    gateway_lines = [_message(line) for line in (log_dir / "gateway.log").read_text().splitlines()]
    assert any('"POST /auth/login' in m for m in gateway_lines), "access log is off"
    assert any('"WebSocket /ws?token=***"' in m for m in gateway_lines), gateway_lines[-20:]
    assert any("access_token=***" in m and "password=***" in m for m in gateway_lines)


def _message(line: str) -> str:
    try:
        parsed: Any = json.loads(line)
    except ValueError:
        return line
    return str(parsed.get("msg", "")) if isinstance(parsed, dict) else line
