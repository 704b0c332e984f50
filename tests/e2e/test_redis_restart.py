"""Issue 11: a Redis restart costs no request made after Redis is back. The whole mesh runs
on a private redis-server the test restarts while clients sign up and check health; every
request started after Redis answers again succeeds (before: the first call on each pooled
connection failed with 503 "Connection closed by server")."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support import Mesh, free_port, start_mesh

pytestmark = pytest.mark.e2e

SERVER = shutil.which("redis-server")


class PrivateRedis:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert SERVER is not None
        command = [SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if SERVER is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (.ci/run installs Debian's redis-server)")
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    server = PrivateRedis(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def restart_mesh(
    private_redis: PrivateRedis, mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    env = {**mesh_env, "REDIS_URL": f"redis://127.0.0.1:{private_redis.port}/0"}
    running = start_mesh(env, Path(tmp_path_factory.mktemp("redis-restart")))
    yield running
    running.stop()


async def _sign_up(http: httpx.AsyncClient) -> int:
    email = f"r-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": "correct horse battery", "name": "R", "organization_name": f"R {email}"}
    return (await http.post("/auth/register", json=body)).status_code


async def test_a_redis_restart_costs_no_request_made_after_it_is_back(
    private_redis: PrivateRedis, restart_mesh: Mesh
) -> None:
    async with httpx.AsyncClient(base_url=restart_mesh.gateway_url, timeout=30) as http:
        # Warm: every process holds pooled connections to this Redis.
        assert (await http.get("/health")).status_code == 200
        assert await _sign_up(http) == 201
        outcomes: list[tuple[float, str, int]] = []
        stop = asyncio.Event()

        async def load(kind: str) -> None:
            while not stop.is_set():
                started = time.monotonic()
                status = (await http.get("/health")).status_code if kind == "health" else await _sign_up(http)
                outcomes.append((started, kind, status))
                await asyncio.sleep(0.02)

        clients = [asyncio.create_task(load(kind)) for kind in ("health", "sign-up", "sign-up")]
        await asyncio.sleep(1.0)
        down_at = time.monotonic()
        await asyncio.to_thread(private_redis.stop)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(private_redis.start)
        back_at = time.monotonic()
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(*clients)

    after = [o for o in outcomes if o[0] > back_at]
    assert len(after) > 20, f"too few requests after the restart: {len(after)}"
    failed_after = [o for o in after if o[2] not in (200, 201)]
    assert not failed_after, f"requests made after Redis was back failed: {failed_after[:5]}"
    failures = [o for o in outcomes if o[2] not in (200, 201)]
    window = max((o[0] for o in failures), default=down_at) - down_at
    print(f"{len(outcomes)} requests, {len(failures)} failed, all within {window:.2f} s of Redis going down")
