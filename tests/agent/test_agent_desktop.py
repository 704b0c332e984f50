"""The real agent on a real X desktop (Xvfb + openbox, real X windows, focus switched by
xdotool), streaming to the real mesh: what the server stores is what was on screen."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agent.outbox import Outbox
from agent.profile import OUTBOX
from tests.agent.agent_process import Account, AgentProcess, sign_up
from tests.agent.desktop import Desktop
from tests.support import Mesh

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Stored:
    at: float
    activity: str
    duration: int
    app: str
    title: str | None


async def stored(owner_engine: AsyncEngine, session_id: str) -> list[Stored]:
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "select timestamp, activity_type, duration_seconds, app_name, title from ingest.activity_logs "
                    "where session_id = cast(:sid as uuid) order by timestamp"
                ),
                {"sid": session_id},
            )
        ).all()
    return [Stored(r[0].timestamp(), str(r[1]), int(r[2]), r[3], r[4]) for r in rows]


def segments(events: list[Stored]) -> list[tuple[str, str, float, int]]:
    """Consecutive events of the same app and state merged: (app, activity, start, seconds)."""
    merged: list[tuple[str, str, float, int]] = []
    for e in events:
        if merged and merged[-1][0] == e.app and merged[-1][1] == e.activity:
            app, activity, start, seconds = merged[-1]
            merged[-1] = (app, activity, start, seconds + e.duration)
        else:
            merged.append((e.app, e.activity, e.at, e.duration))
    return merged


@dataclass
class Working:
    account: Account
    agent: AgentProcess
    session_id: str

    async def finish(self) -> None:
        """Stops the session as the browser would, waits until everything is sent, stops."""
        assert self.agent.command("stop").returncode == 0
        await self.agent.until(lambda: self.agent.status().get("session_id") is None, timeout=20, what="stop seen")
        await self.agent.until(lambda: self.agent.status()["queue_depth"] == 0, timeout=30, what="outbox drained")
        assert self.agent.kill(signal.SIGTERM) == 0


@pytest.fixture
async def working(mesh: Mesh, http: httpx.AsyncClient, desktop: Desktop, tmp_path: Path) -> AsyncIterator[Working]:
    account = await sign_up(http)
    agent = AgentProcess(mesh, tmp_path / "agent", env={"DISPLAY": desktop.display, "XDG_SESSION_TYPE": "x11"})
    assert agent.login(account).returncode == 0
    started = agent.command("start")
    assert started.returncode == 0, started.stderr
    yield Working(account, agent, started.stdout.split()[1])
    if agent.proc is not None and agent.proc.poll() is None:
        agent.kill()


async def test_focus_changes_become_events_with_the_right_apps_and_durations(
    working: Working, desktop: Desktop, owner_engine: AsyncEngine
) -> None:
    clock = desktop.open(["xclock", "-title", "The clock"])
    eyes = desktop.open(["xeyes", "-title", "The eyes"])
    desktop.focus(clock)
    agent = working.agent
    agent.start()
    await agent.until(lambda: agent.status().get("app") == "XClock", what="the agent seeing the clock")
    switches: list[tuple[str, float]] = []
    for window, app, seconds in ((eyes, "XEyes", 3), (clock, "XClock", 4), (eyes, "XEyes", 2)):
        desktop.focus(window)
        switches.append((app, time.time()))
        await asyncio.sleep(seconds)
    desktop.focus(clock)
    switches.append(("XClock", time.time()))
    await asyncio.sleep(2)  # the user's time on each window is the scenario: its durations are checked
    assert agent.status()["backend"] == "x11"
    await working.finish()

    found = segments(await stored(owner_engine, working.session_id))
    assert [(app, activity) for app, activity, _, _ in found] == [
        ("XClock", "active"),
        ("XEyes", "active"),
        ("XClock", "active"),
        ("XEyes", "active"),
        ("XClock", "active"),
    ], found
    # Each switch is where the server's events change app, within a second.
    for (app, at), (seg_app, _, start, _) in zip(switches, found[1:], strict=True):
        assert seg_app == app and abs(start - at) <= 1.0, (app, at, start)
    # The windows in between lasted as long as they had focus, within a second.
    for (_, _, _, seconds), expected in zip(found[1:4], (3, 4, 2), strict=True):
        assert abs(seconds - expected) <= 1, (found, expected)
    titles = {e.title for e in await stored(owner_engine, working.session_id)}
    assert {"The clock", "The eyes"} <= titles


async def test_no_input_past_the_threshold_is_idle_and_a_mouse_move_is_active_again(
    working: Working, desktop: Desktop, owner_engine: AsyncEngine, http: httpx.AsyncClient
) -> None:
    await put_policy(http, working.account, {"idleThresholdSeconds": 2, "idleSampleSeconds": 1})
    desktop.focus(desktop.open(["xclock"]))
    agent = working.agent
    agent.start()
    # The user works (moves the mouse) until the agent, started meanwhile, says active: a
    # single move before it started would already be older than the 2 s threshold.
    for step in range(120):
        desktop.mousemove(10 + 40 * (step % 2), 10)
        if agent.status().get("activity") == "active":
            break
        await asyncio.sleep(0.25)
    else:
        raise AssertionError(f"never active while the mouse moved; see {agent.log_path}")
    await agent.until(lambda: agent.status().get("activity") == "idle", timeout=15, what="idle without input")
    await asyncio.sleep(2)  # the user stays away a while (the idle event's length is checked)
    desktop.mousemove(400, 300)
    moved = time.time()
    await agent.until(lambda: agent.status().get("activity") == "active", timeout=10, what="active after a move")
    await asyncio.sleep(2)  # works on, so the last active event has a length
    await working.finish()
    found = segments(await stored(owner_engine, working.session_id))
    states = [activity for _, activity, _, _ in found]
    assert states[:3] == ["active", "idle", "active"], found
    assert abs(found[2][2] - moved) <= 1.5, (found, moved)  # active again from the move on
    assert found[1][3] >= 2


async def test_a_redact_rule_changes_the_next_events_and_a_dropped_app_reaches_nothing(
    working: Working, desktop: Desktop, owner_engine: AsyncEngine, http: httpx.AsyncClient
) -> None:
    clock = desktop.open(["xclock", "-title", "invoice 4711 for ACME"])
    eyes = desktop.open(["xeyes", "-title", "private eyes"])
    desktop.focus(clock)
    agent = working.agent
    agent.start()
    await agent.until(lambda: agent.status().get("app") == "XClock", what="the clock seen")
    await asyncio.sleep(2)  # time on the old title before the policy changes (events to compare)
    version = await put_policy(
        http,
        working.account,
        {
            "redactRules": [{"field": "title", "pattern": r"invoice \d+"}],
            "dropRules": [{"field": "app", "pattern": "^xeyes$"}],
        },
    )
    await agent.until(lambda: agent.status().get("policy_version") == version, timeout=20, what="the new policy")
    changed = time.time()
    desktop.set_title(clock, "invoice 4712 for ACME")  # a new title: a new event under the new policy
    await asyncio.sleep(2)
    desktop.focus(eyes)
    await asyncio.sleep(3)  # time on the dropped app: what must not be recorded in it
    box = Outbox(agent.data_dir / OUTBOX)
    try:
        local = [e.app for e in box.pending(10_000)]
        assert "XEyes" not in local and "XEyes" not in str(box.get_state("open_event"))
    finally:
        box.close()
    desktop.focus(clock)
    await asyncio.sleep(2)
    await working.finish()
    events = await stored(owner_engine, working.session_id)
    assert all(e.app != "XEyes" for e in events), events
    titles = [e.title for e in events]
    # Unredacted until the policy arrived, redacted from then on: the next events changed,
    # and the title set after it (4712) never appears in the clear.
    cut = titles.index("[redacted] for ACME")
    assert cut > 0 and set(titles[:cut]) == {"invoice 4711 for ACME"}, titles
    assert set(titles[cut:]) == {"[redacted] for ACME"}, titles
    assert max(e.at for e in events[:cut]) < changed
    assert "4712" not in agent.log_path.read_text()


async def put_policy(http: httpx.AsyncClient, account: Account, defaults: dict[str, object]) -> int:
    reply = await http.put("/agent/policy", json={"defaults": defaults}, headers=account.headers)
    assert reply.status_code == 200, reply.text
    version: int = reply.json()["version"]
    return version
