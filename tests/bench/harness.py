"""What every benchmark module gets: a fresh migrated database, Redis prefix, keys, and a
way to start the mesh as real processes. Scenarios are modules exposing
``async def run(env: BenchEnv) -> list[Row]``."""

from __future__ import annotations

import os
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.support import Mesh, TokenFactory, start_mesh
from workpulse.db import sqlalchemy_url
from workpulse.embedded import EmbeddedServers
from workpulse.identity import ensure_keypair
from workpulse.migrate import upgrade_all


@dataclass
class Row:
    scenario: str
    metric: str
    value: float
    baseline: float | None = None
    baseline_name: str = ""
    goal: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline


@dataclass
class BenchEnv:
    database_url: str
    redis_url: str
    env: dict[str, str]
    tokens: TokenFactory
    work_dir: Path
    meshes: list[Mesh] = field(default_factory=list)

    def start_mesh(self, only: tuple[str, ...] | None = None, **extra_env: str) -> Mesh:
        mesh = start_mesh({**self.env, **extra_env}, self.work_dir / f"logs-{len(self.meshes)}", only)
        self.meshes.append(mesh)
        return mesh


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max of ``values`` (zeros when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0, 0.0, 0.0
    return (
        statistics.median(ordered),
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        ordered[-1],
    )


def peak_rss_mb(mesh: Mesh) -> dict[str, float]:
    """Peak resident memory (VmHWM) of each process of ``mesh``, in MiB."""
    found: dict[str, float] = {}
    for name, p in mesh.processes.items():
        if p.proc is None or p.proc.poll() is not None:
            continue
        status = Path(f"/proc/{p.proc.pid}/status").read_text()
        hwm = next((line for line in status.splitlines() if line.startswith("VmHWM")), None)
        found[name] = int(hwm.split()[1]) / 1024 if hwm else psutil.Process(p.proc.pid).memory_info().rss / 2**20
    return found


@contextmanager
def bench_env() -> Iterator[BenchEnv]:
    embedded = EmbeddedServers(Path(".data/bench"))
    database = os.environ.get("DATABASE_URL") or embedded.postgres_url()
    redis_url = os.environ.get("REDIS_URL") or embedded.redis_url()
    admin_url = sqlalchemy_url(database)
    name = f"wp_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    work = Path(tempfile.mkdtemp(prefix="wp-bench-"))
    keys = work / "keys"
    ensure_keypair(keys / "access_private.pem", keys / "access_public.pem")
    ensure_keypair(keys / "service_private.pem", keys / "service_public.pem")
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"wpbench:{name}",
        "DATA_DIR": str(work),
        "ACCESS_TOKEN_PRIVATE_KEY_FILE": str(keys / "access_private.pem"),
        "ACCESS_TOKEN_PUBLIC_KEYS": str(keys / "access_public.pem"),
        "SERVICE_PRIVATE_KEY_FILE": str(keys / "service_private.pem"),
        "SERVICE_PUBLIC_KEY_FILE": str(keys / "service_public.pem"),
        "BCRYPT_ROUNDS": "4",
        "REGISTRATIONS_PER_ADDRESS": "1000000",
        "LOG_LEVEL": "WARNING",
    }
    tokens = TokenFactory(keys / "access_private.pem", keys / "service_private.pem", "workpulse-auth", "workpulse")
    bench = BenchEnv(url, redis_url, env, tokens, work)
    try:
        upgrade_all(url)
        yield bench
    finally:
        for mesh in bench.meshes:
            mesh.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()
        _delete_keys(redis_url, env["REDIS_PREFIX"])
        embedded.stop()


def _delete_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    batch = list(client.scan_iter(match=f"{prefix}:*", count=5000))
    for start in range(0, len(batch), 5000):
        client.delete(*batch[start : start + 5000])
    client.close()
