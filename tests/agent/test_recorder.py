"""The sampling loop: idle from the collector, lock, policy, sessions, crash recovery."""

from __future__ import annotations

from pathlib import Path

from agent.collectors.base import WindowSample
from agent.merging import ACTIVE, IDLE
from agent.outbox import Outbox
from agent.policy import Policy, Rule
from agent.recorder import OPEN_EVENT, Recorder


class FakeDesktop:
    """Stands in for the guarded collector (the X11 one is tested under Xvfb)."""

    def __init__(self) -> None:
        self.window = WindowSample("Editor", "a.txt")
        self.idle: float | None = 0.0
        self.idle_reads = 0

    async def active_window(self) -> WindowSample:
        return self.window

    async def idle_seconds(self) -> float | None:
        self.idle_reads += 1
        return self.idle


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _recorder(tmp_path: Path, policy: Policy, session: str | None = "s1", locked: bool = False):  # type: ignore[no-untyped-def]
    desktop, clock, box = FakeDesktop(), Clock(), Outbox(tmp_path / "o.sqlite3")
    state = {"session": session, "locked": locked}
    rec = Recorder(
        desktop, box, lambda: policy, lambda: state["session"], locked=lambda: bool(state["locked"]), clock=clock
    )
    return rec, desktop, clock, box, state


async def _ticks(rec: Recorder, clock: Clock, n: int) -> None:
    for _ in range(n):
        await rec.tick()
        clock.now += 1.0


async def test_idle_past_the_threshold_and_back(tmp_path: Path) -> None:
    rec, desktop, clock, box, _ = _recorder(tmp_path, Policy(idle_threshold_seconds=3, idle_sample_seconds=5))
    await _ticks(rec, clock, 2)
    assert rec.activity == ACTIVE
    desktop.idle = 3.0
    await _ticks(rec, clock, 5)  # the next read is due 5 s after the first
    assert rec.activity == IDLE
    reads = desktop.idle_reads
    desktop.idle = 0.2
    await _ticks(rec, clock, 1)
    assert rec.activity == ACTIVE and desktop.idle_reads == reads + 1  # read every sample while idle
    rec.stop()
    stored = box.pending(100)
    assert [e.activity for e in stored] == [ACTIVE, IDLE, ACTIVE]
    assert sum(e.duration for e in stored) == 8


async def test_a_locked_screen_is_idle_at_once(tmp_path: Path) -> None:
    rec, _, clock, _, state = _recorder(tmp_path, Policy())
    await _ticks(rec, clock, 1)
    state["locked"] = True
    await _ticks(rec, clock, 1)
    assert rec.activity == IDLE


async def test_nothing_is_recorded_without_a_session_or_for_a_dropped_app(tmp_path: Path) -> None:
    rec, desktop, clock, box, state = _recorder(tmp_path, Policy(drop_rules=(Rule("app", "secret"),)), session=None)
    await _ticks(rec, clock, 3)
    assert box.depth() == 0 and not rec.recording
    state["session"] = "s1"
    desktop.window = WindowSample("SecretApp", "x")
    await _ticks(rec, clock, 3)
    assert box.depth() == 0 and box.get_state(OPEN_EVENT) is None
    assert box.counters()["dropped_by_policy"] == 3
    desktop.window = WindowSample("Editor", "x")
    await _ticks(rec, clock, 3)
    rec.stop()
    assert [e.app for e in box.pending(10)] == ["Editor"]


async def test_the_open_event_survives_a_crash_with_its_id(tmp_path: Path) -> None:
    rec, _, clock, box, _ = _recorder(tmp_path, Policy())
    await _ticks(rec, clock, 4)
    saved = box.get_state(OPEN_EVENT)
    assert isinstance(saved, dict)
    box.close()  # the process dies here: no stop()
    again, *_ = _recorder(tmp_path, Policy())
    again.recover()
    reopened = Outbox(tmp_path / "o.sqlite3")
    events = reopened.pending(10)
    assert [(e.client_event_id, e.duration) for e in events] == [(saved["client_event_id"], 4)]
    assert reopened.get_state(OPEN_EVENT) is None
