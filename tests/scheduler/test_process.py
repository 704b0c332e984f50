"""The scheduler as a real process (starts, serves health, stops cleanly on SIGTERM) and
``workpulse jobs run`` as a real command: recorded runs, exit codes for bad input."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.scheduler.conftest import Rig, World
from tests.support import ROOT, start_mesh


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


async def test_scheduler_process_starts_and_stops_on_sigterm(
    rig: Rig, mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    logs = Path(tmp_path_factory.mktemp("scheduler-process"))
    mesh = await asyncio.to_thread(start_mesh, peer_env(rig, mesh_env), logs, ("scheduler",))
    process = mesh.processes["scheduler"]
    try:
        assert await asyncio.to_thread(process.healthy)
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
