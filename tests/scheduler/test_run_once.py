"""Idempotence and exactly-once: a slot run twice, concurrently, by two replicas, or the
job bodies themselves racing, all leave the same rows and one alert each; failures retry
with backoff; a drain waits for the run in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from services.scheduler import jobs
from services.scheduler.domain import DAILY_SUMMARIES, IDLE_CHECK, OVERTIME_CHECK, UserWindow, WorkTotal
from services.scheduler.jobs import JobConfig, JobContext
from services.scheduler.main import periodic
from services.scheduler.mesh import GrpcPeers
from tests.scheduler.conftest import Rig, World
from tests.scheduler.test_alerts import alerts_of, events_of
from tests.scheduler.test_daily_summaries import SETTLE, busy_day, matches, stored
from workpulse.db import UnitOfWork


async def runs_of(world: World, job: str, slot: datetime) -> list[tuple[object, ...]]:
    return await world.rows(
        "select runner, attempts, finished_at is not null, error from scheduler.job_runs where job = :j and slot = :s",
        j=job,
        s=slot,
    )


async def test_two_replicas_run_each_slot_once(rig: Rig, world: World) -> None:
    now = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)
    org = await world.organization()
    people = [await world.user(org) for _ in range(3)]
    for p in people:
        await world.session(p, now - timedelta(hours=10), last_activity_at=now, idle_since=now - timedelta(minutes=20))
    day = await busy_day(world, await world.user(await world.organization()), "UTC", date(2026, 10, 4))
    first, second = rig.runner(runner_id="replica-a"), rig.runner(runner_id="replica-b")
    for job, as_of in ((IDLE_CHECK, now), (OVERTIME_CHECK, now), (DAILY_SUMMARIES, day.as_of + SETTLE)):
        a, b = await asyncio.gather(first.run(job, as_of), second.run(job, as_of))
        assert [r is not None for r in (a, b)].count(True) == 1, (job, a, b)
        recorded = await runs_of(world, job, as_of)
        assert len(recorded) == 1 and recorded[0][1:] == (1, True, None)
    found = await alerts_of(world, org)
    assert sorted(str(r[0]) for r in found) == ["INACTIVE_ALERT"] * 3 + ["OVERTIME_ALERT"] * 3
    assert len(await events_of(world, org)) == 6
    matches((await stored(world, day.person))[0], day)


async def test_job_bodies_racing_without_the_lock_converge(rig: Rig, world: World) -> None:
    """Even unguarded (two deployments on separate databases locks, a forced rerun), the
    unique keys and upserts leave one row per summary and one alert per session and day."""
    now = datetime(2026, 10, 6, 9, 0, tzinfo=UTC)
    org = await world.organization("Etc/GMT+12")
    people = [await world.user(org) for _ in range(4)]
    for p in people:
        await world.session(p, now - timedelta(hours=10), last_activity_at=now, idle_since=now - timedelta(minutes=30))
    elsewhere = await world.organization("Etc/GMT+12")
    day = await busy_day(world, await world.user(elsewhere), "Etc/GMT+12", date(2026, 10, 5))
    ctx = JobContext(UnitOfWork(rig.maintenance), rig.peers, JobConfig())
    await asyncio.gather(*(jobs.idle_check(ctx, now, False) for _ in range(4)))
    await asyncio.gather(*(jobs.overtime_check(ctx, now, False) for _ in range(4)))
    await asyncio.gather(*(jobs.daily_summaries(ctx, day.as_of + SETTLE, False) for _ in range(4)))
    found = await alerts_of(world, org)
    assert sorted(str(r[0]) for r in found) == ["INACTIVE_ALERT"] * 4 + ["OVERTIME_ALERT"] * 4
    assert len(await events_of(world, org)) == 8
    rows = await stored(world, day.person)
    assert len(rows) == 1
    matches(rows[0], day)


class FlakyPeers(GrpcPeers):
    """The real peers, but work totals fail ``failures`` times first (or wait for a gate)."""

    def __init__(self, real: GrpcPeers, failures: int = 0, gate: asyncio.Event | None = None) -> None:
        self.__dict__.update(real.__dict__)
        self.failures = failures
        self.gate = gate
        self.entered = asyncio.Event()
        self.calls = 0

    async def work_totals(self, windows: Sequence[UserWindow], as_of: datetime) -> list[WorkTotal]:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.calls <= self.failures:
            raise ConnectionError(f"sessions unreachable (call {self.calls})")
        return await super().work_totals(windows, as_of)


async def test_failures_retry_with_backoff_then_record_the_error(rig: Rig, world: World) -> None:
    slot = datetime(2026, 10, 7, 12, 0, tzinfo=UTC)
    org = await world.organization()
    person = await world.user(org)
    await world.session(person, slot - timedelta(hours=10))
    flaky = FlakyPeers(rig.peers, failures=2)
    started = time.monotonic()
    run = await rig.runner(flaky, backoff_seconds=0.05).run(OVERTIME_CHECK, slot)
    assert run is not None and run.error is None and run.attempts == 3
    assert time.monotonic() - started >= 0.05 + 0.1  # two backoffs: 0.05 s, then 0.1 s
    assert len(await alerts_of(world, org)) == 1

    broken = FlakyPeers(rig.peers, failures=100)
    later = slot + timedelta(minutes=30)
    failed = await rig.runner(broken, retries=3).run(OVERTIME_CHECK, later)
    assert failed is not None and failed.attempts == 4 and failed.finished_at is None
    assert failed.error is not None and "sessions unreachable (call 4)" in failed.error
    assert broken.calls == 4
    # An unfinished slot is not done: the next attempt runs it again and completes it.
    retried = await rig.runner().run(OVERTIME_CHECK, later)
    assert retried is not None and retried.error is None and retried.attempts == 5


async def test_drain_waits_for_the_run_in_flight(rig: Rig, world: World) -> None:
    slot = datetime(2026, 10, 8, 12, 0, tzinfo=UTC)
    org = await world.organization()
    await world.session(await world.user(org), slot - timedelta(hours=10))
    gate = asyncio.Event()
    slow = FlakyPeers(rig.peers, gate=gate)
    runner = rig.runner(slow)
    task = runner.spawn(OVERTIME_CHECK, slot)
    assert task is not None
    await asyncio.wait_for(slow.entered.wait(), 10)
    drain = asyncio.create_task(runner.drain())
    done, _ = await asyncio.wait({drain}, timeout=0.3)
    assert not done, "drain returned while a job was running"
    assert runner.spawn(IDLE_CHECK, slot) is None  # draining: no new runs
    gate.set()
    await asyncio.wait_for(drain, 10)
    run = task.result()
    assert run is not None and run.error is None and run.finished_at is not None
    assert len(await alerts_of(world, org)) == 1


async def test_apscheduler_fires_each_job_at_its_slot_starts(rig: Rig) -> None:
    scheduler = periodic(rig.runner())
    scheduler.start(paused=True)
    try:
        jobs_by_id = {j.id: j for j in scheduler.get_jobs()}
        assert set(jobs_by_id) == {"daily_summaries", "idle_check", "overtime_check", "activity_partitions"}
        # Half past a minute, so a trigger that starts counting at "now" cannot land on a slot.
        now = datetime.now(UTC).replace(second=30, microsecond=0)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        periods = {"daily_summaries": 15, "idle_check": 1, "overtime_check": 30, "activity_partitions": 360}
        for job_id, minutes in periods.items():
            period = timedelta(minutes=minutes)
            slot_start = epoch + (now - epoch) // period * period  # the slot ``now`` is in
            fire = jobs_by_id[job_id].trigger.get_next_fire_time(None, now)
            assert fire == slot_start + period, (job_id, fire)  # the next slot's first instant
    finally:
        scheduler.shutdown(wait=False)
