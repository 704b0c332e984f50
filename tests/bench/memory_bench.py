"""Memory of the mesh: every process idle, at its peak under load, and across two loads.

All six processes start as ``workpulse up`` starts them; each one's resident memory is read
once it stops moving (idle), then after each of two runs of the sustained single-event REST
load of ``ingest_bench`` (BENCH_MEMORY_CLIENTS clients on their own sessions for
BENCH_MEMORY_SECONDS). Rows: the idle total and each process idle, each process's peak
(VmHWM) after the loads, and each process's growth from the first load to the second,
which would be a leak (caches and pools are warm after the first).
"""

from __future__ import annotations

import asyncio
import os

import psutil

from tests.bench.harness import BenchEnv, Row, peak_rss_mb
from tests.bench.ingest_bench import _start_session, sustained_scenario
from tests.support import Mesh

CLIENTS = int(os.environ.get("BENCH_MEMORY_CLIENTS", "50"))
SECONDS = float(os.environ.get("BENCH_MEMORY_SECONDS", "8"))
MIB = 2**20


def _rss_mib(mesh: Mesh) -> dict[str, float]:
    found = {}
    for name, p in mesh.processes.items():
        assert p.proc is not None
        found[name] = psutil.Process(p.proc.pid).memory_info().rss / MIB
    return found


async def settled_rss_mib(mesh: Mesh, *, interval: float = 0.5, tolerance: float = 0.25) -> dict[str, float]:
    """Each process's RSS once no process moved by more than ``tolerance`` MiB between two
    samples (connections close, allocators return memory), or after 15 s."""
    previous = _rss_mib(mesh)
    for _ in range(int(15 / interval)):
        await asyncio.sleep(interval)
        now = _rss_mib(mesh)
        if all(abs(now[k] - previous[k]) <= tolerance for k in now):
            return now
        previous = now
    return previous


async def run(env: BenchEnv) -> list[Row]:
    mesh = env.start_mesh()
    host, port = mesh.processes["gateway"].address.split(":")
    idle = await settled_rss_mib(mesh)
    rows = [Row("memory: idle mesh (6 processes)", "RSS MiB, total", sum(idle.values()), goal="< 450")]
    rows += [Row(f"memory: idle {name}", "RSS MiB", mib) for name, mib in idle.items()]

    clients = []
    for _ in range(CLIENTS):
        token = env.tokens.user(role="employee", ttl=3600)
        clients.append((token, (await _start_session(mesh.address("sessions"), token)).id))
    after: list[dict[str, float]] = []
    for _ in range(2):
        await sustained_scenario(host, int(port), clients, SECONDS)
        after.append(await settled_rss_mib(mesh))

    for name, mib in peak_rss_mb(mesh).items():
        rows.append(Row(f"memory: peak {name} after {CLIENTS}-client REST load", "VmHWM MiB", mib, goal="<= 120"))
    for name in mesh.processes:
        rows.append(
            Row(
                f"memory: growth {name}, load run 1 -> run 2",
                "RSS MiB",
                after[1][name] - after[0][name],
                goal="<= 2 (no growth)",
            )
        )
    rows.append(Row("memory: mesh after load run 2", "RSS MiB, total", sum(after[1].values())))
    mesh.stop()
    return rows
