"""Sign-in, the collection notice, expired and revoked tokens, the disk cap — the real CLI
against the real mesh (and, where ingest must misbehave, a scripted ingest)."""

from __future__ import annotations

import asyncio
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from agent.credentials import FILE_NAME, CredentialStore
from agent.gateway import Gateway
from agent.tokens import TokenKeeper
from tests.agent.agent_process import AgentProcess, sign_up
from tests.agent.test_uploader import ScriptedIngest
from tests.support import Mesh, free_port
from workpulse.ingest.v1 import ingest_pb2_grpc

pytestmark = pytest.mark.e2e

UNKNOWN = {"WORKPULSE_AGENT_BACKEND": "unknown"}


@pytest.fixture
async def scripted_ingest() -> AsyncIterator[tuple[ScriptedIngest, str]]:
    ingest = ScriptedIngest()
    server = grpc.aio.server()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield ingest, f"127.0.0.1:{port}"
    await server.stop(None)


async def test_a_wrong_password_is_refused_and_nothing_is_kept(
    mesh: Mesh, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    account = await sign_up(http)
    account.password = "wrong password"
    agent = AgentProcess(mesh, tmp_path / "agent")
    done = agent.login(account)
    assert done.returncode == 1
    assert "log-in refused: HTTP 401" in done.stderr
    assert not (agent.data_dir / FILE_NAME).exists()


async def test_without_a_password_or_a_terminal_login_says_what_is_missing(mesh: Mesh, tmp_path: Path) -> None:
    agent = AgentProcess(mesh, tmp_path / "agent")
    done = agent.command("login", "--email", "a@example.com", "--organization", "acme", stdin="")
    assert done.returncode == 2
    assert "--password-stdin" in done.stderr
    assert agent.command("run").returncode == 3  # not signed in
    assert "not signed in" in agent.command("start").stderr


async def test_run_needs_the_notice_accepted_once(mesh: Mesh, http: httpx.AsyncClient, tmp_path: Path) -> None:
    account = await sign_up(http)
    agent = AgentProcess(mesh, tmp_path / "agent", env=UNKNOWN)
    login = agent.login(account, accept=False)
    assert login.returncode == 0, login.stderr
    assert "Accept with `workpulse-agent run --accept`" in login.stdout
    refused = agent.command("run")
    assert refused.returncode == 4
    assert "window titles" in refused.stdout and "not accepted" in refused.stderr
    agent.start("--accept")
    await agent.until(lambda: agent.status()["running"], what="the agent running once accepted")
    assert agent.kill(signal.SIGTERM) == 0
    agent.start()  # accepted once is enough
    await agent.until(lambda: agent.status()["running"], what="the agent running again")
    assert agent.kill(signal.SIGTERM) == 0
    token_file = agent.data_dir / FILE_NAME
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "file" in agent.status()["credentials"]


async def test_an_access_token_near_its_end_is_refreshed_first(
    mesh: Mesh, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    account = await sign_up(http)
    agent = AgentProcess(mesh, tmp_path / "agent")
    assert agent.login(account).returncode == 0
    store = CredentialStore(agent.data_dir)
    gateway = Gateway(mesh.gateway_url)
    try:
        keeper = TokenKeeper(gateway, store)
        keeper.adopt(account.access_token, expires_in=900)
        assert await keeper.access() == account.access_token  # far from its end: used as it is
        before = store.load()
        keeper.adopt(account.access_token, expires_in=2)
        await asyncio.sleep(1.1)  # within the last half of its life (the margin for short tokens)
        fresh = await keeper.access()
        assert fresh != account.access_token
        assert store.load() != before  # the rotated refresh token was kept
        me = await http.get("/me", headers={"authorization": f"Bearer {fresh}"})
        assert me.status_code == 200 and me.json()["id"] == account.user_id
    finally:
        await gateway.aclose()


async def test_a_revoked_sign_in_stops_the_agent_with_a_clear_message(
    mesh: Mesh, http: httpx.AsyncClient, tmp_path: Path, scripted_ingest: tuple[ScriptedIngest, str]
) -> None:
    account = await sign_up(http)
    agent = AgentProcess(mesh, tmp_path / "agent", env=UNKNOWN)
    assert agent.login(account).returncode == 0
    assert agent.command("start").returncode == 0
    ingest, address = scripted_ingest
    ingest.script = [lambda b: grpc.StatusCode.UNAVAILABLE] * 1000
    agent.start("--ingest", address)
    await agent.until(lambda: ingest.streams >= 1, what="a stream to the scripted ingest")
    # Revoked (as "log out everywhere" or an admin would): the current refresh token dies.
    token = CredentialStore(agent.data_dir).load()
    assert (await http.post("/auth/logout", json={"refresh_token": token})).status_code == 204
    ingest.script = [lambda b: grpc.StatusCode.UNAUTHENTICATED] * 1000
    assert agent.proc is not None
    assert await asyncio.to_thread(agent.proc.wait, 30) == 3
    assert "the sign-in was revoked or has expired" in agent.log_path.read_text()
    again = agent.command("run")
    assert again.returncode == 3 and "run `workpulse-agent login`" in again.stderr


async def test_the_disk_cap_drops_the_oldest_and_status_shows_it(
    mesh: Mesh, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    account = await sign_up(http)
    agent = AgentProcess(mesh, tmp_path / "agent", env=UNKNOWN)
    assert agent.login(account).returncode == 0
    assert agent.command("start").returncode == 0
    nowhere = f"127.0.0.1:{free_port()}"  # ingest unreachable: everything queues
    # Room for two rows; an event is closed every second.
    agent.start("--ingest", nowhere, "--disk-cap-mb", str(300 / 2**20), "--flush-seconds", "1")
    await agent.until(lambda: agent.status()["dropped"].get("disk_cap", 0) >= 1, timeout=60, what="a row dropped")
    report = agent.status()
    assert report["queue_depth"] <= 2 and report["queued_bytes"] <= 300
    assert report["connection"].startswith(("reconnecting", "connecting"))
    shown = agent.command("status").stdout
    assert "dropped:      disk_cap" in shown
    assert agent.kill(signal.SIGTERM) == 0
