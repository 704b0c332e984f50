"""Never lose an hour: ingest dies while the agent records, the agent is SIGKILLed and
restarted, ingest comes back — the server then holds exactly what the agent recorded.

The agent runs as the real ``workpulse-agent`` against a mesh of real processes. Its
collector is the "unknown" one (this test is about the outbox and the stream, not the
desktop; the X11 tests are in test_agent_desktop.py), so every second is recorded as
active time of the app "unknown".
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.agent.agent_process import AgentProcess, session_totals, sign_up, stored_events
from tests.support import Mesh, start_mesh

pytestmark = pytest.mark.e2e


@pytest.fixture
def agent_mesh(mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    env = {**mesh_env, "REDIS_PREFIX": f"{mesh_env['REDIS_PREFIX']}:agent-offline"}
    running = start_mesh(env, Path(tmp_path_factory.mktemp("agent-offline")))
    yield running
    running.stop()


async def test_offline_kill_and_restart_lose_nothing_and_double_nothing(
    agent_mesh: Mesh, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=agent_mesh.gateway_url, timeout=30) as http:
        account = await sign_up(http)
        agent = AgentProcess(agent_mesh, tmp_path / "agent", env={"WORKPULSE_AGENT_BACKEND": "unknown"})
        login = agent.login(account)
        assert login.returncode == 0, login.stderr
        assert "web addresses" in login.stdout  # the notice of what is collected was shown
        started = agent.command("start")
        assert started.returncode == 0, started.stderr
        session_id = started.stdout.split()[1]

        agent.start()
        await agent.until(lambda: agent.status().get("accepted", 0) >= 1, what="a first acknowledged event")

        ingest = agent_mesh.processes["ingest"]
        ingest.kill()
        await agent.until(lambda: agent.status()["queue_depth"] >= 1, timeout=40, what="events queued offline")
        offline = agent.status()
        assert offline["connection"].startswith("reconnecting"), offline

        assert agent.kill(signal.SIGKILL) == -signal.SIGKILL
        agent.start()  # again, still offline: the open event of the killed run is recovered
        await agent.until(lambda: agent.status()["running"], what="the restarted agent")
        await agent.until(lambda: len(agent.recorded()) >= 4, timeout=40, what="more events recorded")

        await ingest.restart_async()
        await agent.until(lambda: agent.status()["connection"] == "connected", timeout=60, what="reconnection")

        stopped = agent.command("stop")
        assert stopped.returncode == 0, stopped.stderr
        # The session stopped elsewhere (here: by the CLI, as the browser would) is noticed
        # within seconds; the last event is recorded and sent, then nothing more.
        await agent.until(lambda: agent.status().get("session_id") is None, timeout=20, what="the stop noticed")
        await agent.until(lambda: agent.status()["queue_depth"] == 0, timeout=30, what="the outbox drained")
        assert agent.kill(signal.SIGTERM) == 0

        recorded = agent.recorded()
        # An event begun after the stop and before the agent heard of it is refused by the
        # server (after the session's end): dropped with its reason counted, nothing else.
        refused = agent.refused()
        assert set(refused.values()) <= {"after_session_end"}, refused
        stored = await stored_events(owner_engine, session_id)
        report = agent.status()
        assert report["dropped"] == {} and report["refused"] == ({"after_session_end": len(refused)} if refused else {})
        assert agent.runs == 2
        kept = {k: v for k, v in recorded.items() if k not in refused}
        assert stored == kept  # the same events, ids and durations: nothing lost, nothing doubled
        active, idle, status = await session_totals(http, account, session_id)
        assert status == "stopped"
        assert (active, idle) == (sum(d for _, d, _ in kept.values()), 0)
        assert active >= 8
