"""The real ``workpulse-agent`` as a process, for end-to-end tests against a real mesh.

Each agent has its own data folder; no keyring exists here, so its refresh token is
the 0600 file (``PYTHON_KEYRING_BACKEND`` pins that, whatever the machine has). Its JSON
log lines are kept in a file; ``recorded()`` reads back every "event recorded" line, the
device's own account of what it measured, to compare with what the server stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Mesh

AGENT = [sys.executable, "-m", "agent"]


@dataclass
class Account:
    email: str
    password: str
    workspace: str
    user_id: str
    organization_id: str
    access_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access_token}"}


async def sign_up(http: httpx.AsyncClient) -> Account:
    email = f"agent-{uuid.uuid4().hex[:10]}@example.com"
    reply = await http.post(
        "/auth/register",
        json={
            "email": email,
            "password": "correct horse",
            "name": "Agent User",
            "organization_name": f"Agents {uuid.uuid4().hex[:8]}",
        },
    )
    assert reply.status_code == 201, reply.text
    body = reply.json()
    return Account(
        email,
        "correct horse",
        body["user"]["workspace"],
        body["user"]["id"],
        body["user"]["organization_id"],
        body["access_token"],
    )


@dataclass
class AgentProcess:
    mesh: Mesh
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", **self.env}

    def _options(self) -> list[str]:
        return [
            "--data-dir",
            str(self.data_dir),
            "--gateway",
            self.mesh.gateway_url,
            "--ingest",
            self.mesh.address("ingest"),
        ]

    def command(self, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*AGENT, args[0], *self._options(), *args[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=timeout,
        )

    def login(self, account: Account, *, accept: bool = True) -> subprocess.CompletedProcess[str]:
        done = self.command(
            "login",
            "--email",
            account.email,
            "--organization",
            account.workspace,
            "--password-stdin",
            *(["--accept"] if accept else []),
            stdin=account.password + "\n",
        )
        return done

    def start(self, *extra: str) -> None:
        assert self.proc is None or self.proc.poll() is not None
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*AGENT, "run", *self._options(), *extra], env=self._env(), stdout=log, stderr=subprocess.STDOUT
        )
        self.runs += 1

    def kill(self, sig: signal.Signals = signal.SIGKILL, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def status(self) -> dict[str, Any]:
        done = self.command("status", "--json")
        assert done.returncode == 0, done.stderr
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text().splitlines() if self.log_path.exists() else []:
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue  # a traceback line of a killed interpreter
        return lines

    def recorded(self) -> dict[str, tuple[str, int, str]]:
        """client event id → (activity, duration, app) of every event the agent recorded."""
        return {
            line["client_event_id"]: (line["activity"], line["duration"], line["app"])
            for line in self.logs()
            if line.get("msg") == "event recorded"
        }

    def refused(self) -> dict[str, str]:
        """client event id → reason of every event the server refused."""
        return {line["client_event_id"]: line["reason"] for line in self.logs() if line.get("msg") == "event refused"}

    async def until(self, check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = await asyncio.to_thread(check)
            if found:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent exited ({self.proc.returncode}) waiting for {what}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; see {self.log_path}")
            await asyncio.sleep(0.25)


async def stored_events(owner_engine: AsyncEngine, session_id: str) -> dict[str, tuple[str, int, str]]:
    """What the server stored for a session: client event id → (activity, duration, app)."""
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "select client_event_id, activity_type, duration_seconds, app_name from ingest.activity_logs "
                    "where session_id = cast(:sid as uuid)"
                ),
                {"sid": session_id},
            )
        ).all()
    return {r[0]: (str(r[1]).lower(), int(r[2]), r[3]) for r in rows}


async def session_totals(http: httpx.AsyncClient, account: Account, session_id: str) -> tuple[int, int, str]:
    reply = await http.get(f"/sessions/{session_id}", headers=account.headers)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return int(body["total_active_seconds"]), int(body["total_idle_seconds"]), body["status"]
