"""Issue 11: restarts stay fast. The supervisor's schedule on a fake clock, and its loop on
real child processes."""

from __future__ import annotations

import subprocess
import sys
import time

from workpulse.restarts import RestartSchedule


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_crashes_an_hour_apart_each_restart_within_the_first_backoff() -> None:
    clock = Clock()
    schedule = RestartSchedule(first=1.0, ceiling=30.0, stable=60.0, clock=clock)
    schedule.started("ingest")
    for _ in range(3):
        clock.now += 3600
        assert schedule.exited("ingest") == clock.now + 1.0
        assert not schedule.due("ingest")
        clock.now += 1.0
        assert schedule.due("ingest")
        schedule.started("ingest")


def test_a_crash_loop_doubles_up_to_the_ceiling() -> None:
    clock = Clock()
    schedule = RestartSchedule(first=1.0, ceiling=4.0, stable=60.0, clock=clock)
    schedule.started("ingest")
    waits = []
    for _ in range(5):
        clock.now += 0.1  # dies at once after each start
        waits.append(schedule.exited("ingest") - clock.now)
        clock.now += waits[-1]
        assert schedule.due("ingest")
        schedule.started("ingest")
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_process_that_stays_down_is_scheduled_once() -> None:
    clock = Clock()
    schedule = RestartSchedule(first=1.0, clock=clock)
    schedule.started("auth")
    clock.now += 5
    due = schedule.exited("auth")
    clock.now += 0.5
    assert schedule.exited("auth") == due  # seen again on the next look: same restart


def test_two_processes_dying_together_are_both_due_after_the_first_backoff() -> None:
    clock = Clock()
    schedule = RestartSchedule(first=1.0, clock=clock)
    for name in ("ingest", "sessions"):
        schedule.started(name)
    clock.now += 120
    assert schedule.exited("ingest") == schedule.exited("sessions") == clock.now + 1.0
    clock.now += 1.0
    assert schedule.due("ingest") and schedule.due("sessions")


def test_the_supervisor_loop_restarts_two_dead_children_without_waiting_on_either() -> None:
    """Real processes: two children that exit at once are both started again within the
    first backoff of each other, and the loop never sleeps on one of them."""
    from workpulse import supervisor as sup

    class Recorder(sup.Supervisor):
        def __init__(self) -> None:
            self.children = {}
            self.spawned: list[tuple[str, float]] = []

        def spawn(self, spec: sup.ProcessSpec, env: dict[str, str]) -> None:
            self.spawned.append((spec.name, time.monotonic()))
            alive = spec.name not in ("ingest", "sessions") or len(self.spawned) > len(sup.PROCESSES)
            code = "import time; time.sleep(60)" if alive else "raise SystemExit(3)"
            self.children[spec.name] = subprocess.Popen([sys.executable, "-c", code])

    watched = Recorder()
    schedule = RestartSchedule(first=0.5)
    try:
        for spec in sup.PROCESSES:
            watched.spawn(spec, {})
            schedule.started(spec.name)
        for child in (watched.children["ingest"], watched.children["sessions"]):
            child.wait(10)
        started = time.monotonic()
        while len(watched.spawned) < len(sup.PROCESSES) + 2 and time.monotonic() - started < 5:
            before = time.monotonic()
            watched.restart_exited(schedule, {})
            assert time.monotonic() - before < 0.2  # one look never waits out a backoff
            time.sleep(0.05)
        again = [(name, at) for name, at in watched.spawned[len(sup.PROCESSES) :]]
        assert sorted(name for name, _ in again) == ["ingest", "sessions"]
        assert all(at - started < 1.5 for _, at in again)
    finally:
        for child in watched.children.values():
            child.kill()
            child.wait()
