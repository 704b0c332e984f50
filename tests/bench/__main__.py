"""``make bench``: runs every scenario module and prints one table.

``python -m tests.bench [name ...]`` runs only the named scenarios.
"""

from __future__ import annotations

import asyncio
import sys
from importlib import import_module

from tests.bench.harness import BenchEnv, Row, bench_env

# One line per scenario module; each exposes ``async def run(env: BenchEnv) -> list[Row]``.
SCENARIOS: tuple[str, ...] = (
    "tests.bench.ingest_bench",
    "tests.bench.realtime_bench",
    "tests.bench.memory_bench",  # before the scheduler's 100k sessions, which it reports itself
    "tests.bench.scheduler_bench",
    "tests.bench.agent_bench",
    "tests.bench.dashboard_bench",
    "tests.bench.dedupe_bench",  # last: it adds 200 days of partitions to the bench database
)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def print_table(rows: list[Row]) -> None:
    header = ("scenario", "metric", "value", "baseline", "baseline value", "ratio", "goal")
    lines = [header] + [
        (r.scenario, r.metric, _fmt(r.value), r.baseline_name, _fmt(r.baseline), _fmt(r.ratio), r.goal) for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")


async def run_all(env: BenchEnv, names: list[str]) -> list[Row]:
    rows: list[Row] = []
    for name in SCENARIOS:
        if names and not any(n in name for n in names):
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(await import_module(name).run(env))
    return rows


def main() -> None:
    with bench_env() as env:
        rows = asyncio.run(run_all(env, sys.argv[1:]))
    print_table(rows)


if __name__ == "__main__":
    main()
