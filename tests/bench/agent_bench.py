"""The desktop agent's own cost at the default sampling (issue 12): CPU and memory.

The real ``workpulse-agent run`` on a real X desktop (Xvfb + openbox, two real windows),
recording into a session of a real mesh, measured over ``BENCH_AGENT_SECONDS`` (60):
once with nothing happening on the desktop, once with the focus switched every second
(each switch closes an event: the busiest the merging, the outbox and the stream get at
the default sampling). CPU is the agent process's user + system time over the wall
time, as a percentage of one core; memory is its RSS at the end and its peak (VmHWM).
Goal: under 1 % of a core and under 60 MiB.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from _pytest.outcomes import Skipped

from tests.agent.agent_process import AgentProcess, sign_up
from tests.agent.desktop import Desktop
from tests.bench.harness import BenchEnv, Row

SECONDS = float(os.environ.get("BENCH_AGENT_SECONDS", "60"))


async def run(env: BenchEnv) -> list[Row]:
    try:
        desktop = Desktop()
    except Skipped as skipped:
        print(f"agent bench skipped: {skipped}")
        return []
    mesh = env.start_mesh()
    rows: list[Row] = []
    try:
        windows = [desktop.open(["xclock"]), desktop.open(["xeyes"])]
        async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as http:
            for scenario, switching in (("idle desktop", False), ("focus change every second", True)):
                account = await sign_up(http)
                folder = Path(tempfile.mkdtemp(prefix="wp-agent-bench-", dir=env.work_dir))
                agent = AgentProcess(mesh, folder / "agent", env={"DISPLAY": desktop.display})
                assert agent.login(account).returncode == 0
                assert agent.command("start").returncode == 0
                desktop.focus(windows[0])
                agent.start()
                await agent.until(lambda a=agent: a.status().get("app") == "XClock", what="the agent recording")
                assert agent.proc is not None
                process = psutil.Process(agent.proc.pid)
                await asyncio.sleep(5)  # past start-up (imports, first policy fetch, first batch)
                cpu_before, wall_before = _cpu(process), time.monotonic()
                deadline = wall_before + SECONDS
                turn = 0
                while time.monotonic() < deadline:
                    if switching:
                        turn += 1
                        desktop.focus(windows[turn % 2])
                    await asyncio.sleep(1.0)
                cpu = (_cpu(process) - cpu_before) / (time.monotonic() - wall_before) * 100
                rss = process.memory_info().rss / 2**20
                hwm = _hwm_mib(process.pid)
                sent = agent.status()["accepted"]
                agent.kill()
                rows += [
                    Row(f"agent: {scenario}, {SECONDS:.0f} s", "CPU % of one core", cpu, goal="< 1"),
                    Row(f"agent: {scenario}", "RSS MiB at the end / peak", rss, hwm, "peak (VmHWM)", goal="< 60"),
                    Row(f"agent: {scenario}", "events acknowledged", float(sent)),
                ]
    finally:
        desktop.close()
        mesh.stop()
    return rows


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return 0.0
