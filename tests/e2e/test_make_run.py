"""``workpulse up`` (what ``make run`` starts), as a newcomer runs it: no DATABASE_URL or
REDIS_URL, an empty data folder → embedded PostgreSQL and Redis, migrations, every process
healthy; Ctrl-C stops it cleanly; a second start keeps the data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, free_port
from workpulse.supervisor import PROCESSES

pytestmark = pytest.mark.e2e


def _start(data_dir: Path, ports: dict[str, int], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({spec.port_variable: str(ports[spec.name]) for spec in PROCESSES})
    env.update({"DATA_DIR": str(data_dir), "BCRYPT_ROUNDS": "4", "LOG_LEVEL": "WARNING"})
    return subprocess.Popen(
        [sys.executable, "-m", "workpulse.cli", "up"],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait_up(proc: subprocess.Popen[bytes], log: Path, url: str, timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert proc.poll() is None, f"workpulse up exited early:\n{log.read_text()[-3000:]}"
        if "WorkPulse is up" in log.read_text():
            assert httpx.get(f"{url}/health", timeout=5).status_code == 200
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"not healthy within {timeout}s:\n{log.read_text()[-3000:]}")


def _jobs_run(data_dir: Path, name: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING"})
    command = [sys.executable, "-m", "workpulse.cli", "jobs", "run", name]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(60)


def test_up_from_empty_folder_then_clean_stop_and_warm_restart_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = {spec.name: free_port() for spec in PROCESSES}
    url = f"http://127.0.0.1:{ports['gateway']}"
    email = f"founder-{uuid.uuid4().hex[:6]}@example.com"

    cold = _start(data_dir, ports, tmp_path / "cold.log")
    try:
        cold_seconds = _wait_up(cold, tmp_path / "cold.log", url)
        registered = httpx.post(
            f"{url}/auth/register",
            json={"email": email, "password": "correct horse", "name": "Founder", "organization_name": "Acme"},
        )
        assert registered.status_code == 201, registered.text
        org = registered.json()["user"]["organization_id"]
        # Issue 10: a job run by hand beside `make run` finds its embedded databases.
        ran = _jobs_run(data_dir, "activity_partitions")
        assert ran.returncode == 0, ran.stderr
        assert "activity_partitions" in ran.stdout
    finally:
        assert _stop(cold) == 0
    stopped = _jobs_run(data_dir, "activity_partitions")
    assert stopped.returncode == 2 and "make run" in stopped.stderr, stopped.stderr
    assert (data_dir / "postgres").is_dir() and (data_dir / "keys").is_dir()

    warm = _start(data_dir, ports, tmp_path / "warm.log")
    try:
        warm_seconds = _wait_up(warm, tmp_path / "warm.log", url)
        login = httpx.post(
            f"{url}/auth/login", json={"email": email, "password": "correct horse", "organization_id": org}
        )
        assert login.status_code == 200, login.text
    finally:
        assert _stop(warm) == 0
    print(f"\nmake run healthy: cold {cold_seconds:.1f}s, warm {warm_seconds:.1f}s")
