"""The scheduler as a real process (starts, serves health, stops cleanly on SIGTERM) and
``workpulse jobs run`` as a real command: recorded runs, exit codes for bad input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.scheduler.conftest import Rig, World
from tests.support import ROOT, eventually, start_mesh
from workpulse.redisconn import Keys, events_stream


def peer_env(rig: Rig, mesh_env: dict[str, str]) -> dict[str, str]:
    address = rig.reporting_address
    return {**mesh_env, "AUTH_ADDR": address, "SESSIONS_ADDR": address, "INGEST_ADDR": address}


async def workpulse(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workpulse.cli",
        *args,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_scheduler_process_relays_alerts_and_stops_on_sigterm(
    rig: Rig,
    world: World,
    mesh_env: dict[str, str],
    redis_client: Any,
    redis_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    logs = Path(tmp_path_factory.mktemp("scheduler-process"))
    env = peer_env(rig, mesh_env)
    mesh = await asyncio.to_thread(start_mesh, env, logs, ("scheduler",))
    process = mesh.processes["scheduler"]
    try:
        assert await asyncio.to_thread(process.healthy)
        # An alert committed by a run reaches the events stream through the process's relay.
        as_of = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
        person = await world.user(await world.organization())
        idle_since = as_of - timedelta(minutes=9)
        session = await world.session(person, as_of - timedelta(hours=1), last_activity_at=as_of, idle_since=idle_since)
        code, _, err = await workpulse(env, "jobs", "run", "idle_check", "--as-of", as_of.isoformat())
        assert code == 0, err
        stream = events_stream(Keys(redis_prefix))

        async def relayed() -> dict[str, Any] | None:
            for _, fields in await redis_client.xrange(stream):
                data = json.loads(fields["data"])
                if fields["type"] == "INACTIVE_ALERT" and data.get("sessionId") == session.id:
                    return {**fields, "data": data}
            return None

        entry = await eventually(relayed, timeout=15, what="INACTIVE_ALERT on the events stream")
        assert entry["service"] == "scheduler" and entry["org"] == person.org
        assert entry["data"]["userId"] == person.id and entry["data"]["idleMinutes"] == 9
        process.signal(signal.SIGTERM)
        assert process.proc is not None
        code = await asyncio.to_thread(process.proc.wait, 30)
        assert code == 0, (logs / "scheduler.log").read_text()[-2000:]
    finally:
        await asyncio.to_thread(mesh.stop)


async def test_jobs_run_command(rig: Rig, world: World, mesh_env: dict[str, str]) -> None:
    env = peer_env(rig, mesh_env)
    code, out, err = await workpulse(env, "jobs", "run", "idle_check", "--as-of", "2026-12-01T10:00:30Z")
    assert code == 0, err
    assert out.startswith("idle_check 2026-12-01T10:00:00+00:00: "), out
    rows = await world.rows(
        "select runner is not null, finished_at is not null, error from scheduler.job_runs "
        "where job = 'idle_check' and slot = '2026-12-01T10:00:00Z'"
    )
    assert rows == [(True, True, None)]

    code, _, err = await workpulse(env, "jobs", "run", "weekly_digest")
    assert code == 2 and "unknown job 'weekly_digest'" in err and "daily_summaries" in err
    code, _, err = await workpulse(env, "jobs", "run", "idle_check", "--as-of", "tomorrow")
    assert code == 2 and "--as-of" in err
