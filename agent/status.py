"""What ``workpulse-agent status`` shows: the running agent's state and the outbox's counts.

The running agent rewrites ``status.json`` every couple of seconds (atomically); the
command reads it and the outbox's counters, so it works from another process, while
the agent runs or after it stopped.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.outbox import Outbox
from agent.profile import OUTBOX, STATUS

STALE_AFTER = 10.0


def write(folder: Path, state: dict[str, Any]) -> None:
    temporary = folder / (STATUS + ".tmp")
    temporary.write_text(json.dumps({**state, "pid": os.getpid(), "updated_at": time.time()}))
    os.replace(temporary, folder / STATUS)


def read(folder: Path) -> dict[str, Any]:
    """Everything ``status`` prints, as one JSON-able dict."""
    try:
        state: dict[str, Any] = json.loads((folder / STATUS).read_text())
    except (FileNotFoundError, ValueError):
        state = {}
    running = bool(state) and _alive(int(state.get("pid", 0))) and time.time() - state["updated_at"] < STALE_AFTER
    outbox = Outbox(folder / OUTBOX)
    try:
        counters = outbox.counters()
        depth = outbox.depth()
    finally:
        outbox.close()
    return {
        "running": running,
        **({k: v for k, v in state.items() if k not in ("updated_at",)} if running else {}),
        "queue_depth": depth,
        "queued_bytes": counters.pop("stored_bytes", 0),
        "dropped": {k.removeprefix("dropped_"): v for k, v in counters.items() if k.startswith("dropped_")},
        "refused": {k.removeprefix("refused_"): v for k, v in counters.items() if k.startswith("refused_")},
        "accepted": counters.get("accepted", 0),
        "duplicate": counters.get("duplicate", 0),
    }


def render(report: dict[str, Any]) -> str:
    lines = [f"agent:        {'running (pid ' + str(report['pid']) + ')' if report['running'] else 'not running'}"]
    if report["running"]:
        ack = report.get("last_ack_at")
        lines += [
            f"connection:   {report.get('connection')}"
            + (f" — {report['last_error']}" if report.get("last_error") else ""),
            f"collector:    {report.get('backend')} (restarts: {report.get('collector_restarts', 0)})",
            f"session:      {report.get('session_id') or 'none (recording paused)'}",
            f"now:          {report.get('app') or '-'}, {report.get('activity') or '-'}",
            f"policy:       version {report.get('policy_version')}",
            f"last ack:     {_when(ack) if ack else 'never'}",
        ]
    lines += [
        f"queue:        {report['queue_depth']} event(s), {report['queued_bytes']} bytes",
        f"sent:         {report['accepted']} accepted, {report['duplicate']} duplicate",
        f"refused:      {_counts(report['refused'])}",
        f"dropped:      {_counts(report['dropped'])}",
    ]
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def _when(epoch: float) -> str:
    return f"{datetime.fromtimestamp(epoch, UTC).isoformat(timespec='seconds')} ({time.time() - epoch:.0f} s ago)"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
