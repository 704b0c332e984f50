"""Where the single-event REST path spends its CPU: py-spy on every mesh process under load.

``python -m tests.bench.profile [clients] [orgs]`` starts the mesh the ingest bench starts,
drives ``clients`` closed-loop clients (default 50, each in its own organization; ``1``
as the second argument puts them all in one), samples each process with py-spy for the
load's middle 15 s and prints, per process, the functions holding the most samples
(inclusive) and the most samples at the top of the stack (self). py-spy is a development
tool, not a dependency: ``pip install py-spy`` into the virtualenv first.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import sys
from pathlib import Path
from subprocess import DEVNULL

from tests.bench.harness import bench_env
from tests.bench.ingest_bench import _start_session, sustained_scenario

SAMPLE_SECONDS = 15
TOP = 12


def _frame(raw: str) -> tuple[str, bool]:
    """("function (file)", whether the file is the project's own) of a py-spy frame."""
    function, _, where = raw.partition(" (")
    path = where.split(":")[0]
    # py-spy names the project's files relative to the working directory, libraries by
    # their path under site-packages.
    own = path.startswith(("services/", "workpulse/", "gateway/"))
    return f"{function} ({path.rsplit('/', 1)[-1]})", own


def _summary(raw: Path) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, top inclusive, top self, top inclusive of the project's own functions) of
    py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    project: collections.Counter[str] = collections.Counter()
    top: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if " (" in f]
        total += count
        for frame, own in set(frames):
            inclusive[frame] += count
            if own and not frame.startswith(("main (", "run (", "<module>")):
                project[frame] += count
        if frames:
            top[frames[-1][0]] += count
    return total, inclusive.most_common(TOP), top.most_common(TOP), project.most_common(2 * TOP)


def _py_spy() -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return spy


async def main(spy: str, clients_count: int, one_org: bool) -> None:
    with bench_env() as env:
        mesh = env.start_mesh(only=("auth", "sessions", "ingest", "realtime", "gateway"))
        host, port = mesh.processes["gateway"].address.split(":")
        org = "00000000-0000-4000-8000-000000000001" if one_org else None
        clients = []
        for _ in range(clients_count):
            token = env.tokens.user(org=org, role="employee", ttl=3600)
            clients.append((token, (await _start_session(mesh.address("sessions"), token)).id))
        load = asyncio.create_task(sustained_scenario(host, int(port), clients, SAMPLE_SECONDS + 6))
        await asyncio.sleep(3)
        outputs = {}
        spies: list[asyncio.subprocess.Process] = []
        for name in ("gateway", "ingest", "sessions", "realtime"):
            proc = mesh.processes[name].proc
            assert proc is not None
            outputs[name] = env.work_dir / f"{name}.collapsed"
            command = [spy, "record", "--pid", str(proc.pid), "--duration", str(SAMPLE_SECONDS), "--rate", "200"]
            command += ["--format", "raw", "--output", str(outputs[name]), "--nonblocking"]
            spies.append(await asyncio.create_subprocess_exec(*command, stdout=DEVNULL, stderr=DEVNULL))
        rate, p50, p99, failures = await load
        for s in spies:
            await s.wait()
        where = "one organization" if one_org else "own organizations"
        print(
            f"{clients_count} clients, {where}: {rate:.0f} req/s, p50 {p50:.0f} / p99 {p99:.0f} ms, {failures} failed"
        )
        for name, raw in outputs.items():
            total, inclusive, own, project = _summary(raw)
            print(f"\n## {name}: {total} samples")
            print("inclusive:")
            for frame, count in inclusive:
                print(f"  {100 * count / total:5.1f}%  {frame}")
            print("self:")
            for frame, count in own:
                print(f"  {100 * count / total:5.1f}%  {frame}")
            print("the project's functions, inclusive:")
            for frame, count in project:
                print(f"  {100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(_py_spy(), int(args[0]) if args else 50, len(args) > 1 and args[1] == "1"))
