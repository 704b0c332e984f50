"""Runs jobs safely: once per slot across replicas, recorded, retried, caught up, drained.

* One run of a job at a time across every replica: a PostgreSQL advisory lock (held on its
  own connection for the run, so a crashed process releases it).
* Once per slot: ``scheduler.job_runs`` has one row per (job, slot); a finished slot is
  skipped unless the run was asked for by hand.
* Failures retry ``retries`` times with exponential backoff; every attempt is recorded.
* After downtime, :meth:`JobRunner.catch_up` replays the missed slots (all of them for
  daily summaries, the latest one for checks whose past cannot be observed any more).
* :meth:`JobRunner.drain` waits for the runs in flight (SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scheduler import repository
from services.scheduler.domain import JOBS, JobRun, job_spec, slot_of, slots_between, utc
from services.scheduler.jobs import BODIES, JobContext

logger = logging.getLogger("workpulse.scheduler.jobs")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class JobBusy(Exception):
    """Another replica holds the job's lock for longer than we were willing to wait."""


class JobRunner:
    def __init__(
        self,
        engine: AsyncEngine,
        ctx: JobContext,
        *,
        retries: int = 3,
        backoff_seconds: float = 2.0,
        lock_wait_seconds: float = 60.0,
        catch_up_horizon: timedelta = timedelta(days=2),
        clock: Clock = system_clock,
        runner_id: str | None = None,
    ) -> None:
        self._engine = engine
        self._ctx = ctx
        self._retries = retries
        self._backoff = backoff_seconds
        self._lock_wait = lock_wait_seconds
        self._horizon = catch_up_horizon
        self._clock = clock
        self._id = runner_id or f"{socket.gethostname()}:{os.getpid()}"
        self._in_flight: set[asyncio.Task[JobRun | None]] = set()
        self._closing = False

    @asynccontextmanager
    async def _job_lock(self, job: str) -> AsyncIterator[None]:
        async with self._engine.connect() as conn:
            await conn.execute(
                text("select set_config('lock_timeout', :t, false)"), {"t": f"{int(self._lock_wait * 1000)}ms"}
            )
            try:
                await conn.execute(
                    text("select pg_advisory_lock(hashtext('workpulse.scheduler'), hashtext(:j))"), {"j": job}
                )
            except DBAPIError as exc:
                raise JobBusy(f"job {job} is running elsewhere") from exc
            await conn.execute(text("select set_config('lock_timeout', '0', false)"))
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(
                    text("select pg_advisory_unlock(hashtext('workpulse.scheduler'), hashtext(:j))"), {"j": job}
                )
                await conn.commit()

    async def run(self, name: str, as_of: datetime | None = None, *, manual: bool = False) -> JobRun | None:
        """Runs job ``name`` for the slot of ``as_of`` (now when None). A scheduled run
        (``manual=False``) computes as of the slot start and skips a finished slot; a run by
        hand computes as of ``as_of`` exactly and always runs. Returns the recorded run, or
        None when the slot was already done."""
        spec = job_spec(name)
        moment = utc(as_of) if as_of is not None else self._clock()
        slot = slot_of(moment, spec.period)
        effective = moment if manual else slot
        async with self._job_lock(name):
            if not manual:
                async with self._engine.begin() as conn:
                    done = await repository.get_run(conn, name, slot)
                if done is not None and done.finished_at is not None:
                    return None
            return await self._attempts(name, slot, effective, manual)

    async def _attempts(self, name: str, slot: datetime, as_of: datetime, manual: bool) -> JobRun:
        body = BODIES[name]
        for attempt in range(self._retries + 1):
            async with self._engine.begin() as conn:
                await repository.start_run(conn, name, slot, self._id)
            try:
                rows = await body(self._ctx, as_of, manual)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:2000]
                async with self._engine.begin() as conn:
                    run = await repository.finish_run(conn, name, slot, 0, error)
                logger.warning(
                    "job failed",
                    extra={"fields": {"job": name, "slot": slot.isoformat(), "attempt": attempt + 1, "error": error}},
                )
                if attempt == self._retries or self._closing:
                    return run
                await asyncio.sleep(self._backoff * 2**attempt)
                continue
            async with self._engine.begin() as conn:
                run = await repository.finish_run(conn, name, slot, rows, None)
            logger.info("job done", extra={"fields": {"job": name, "slot": slot.isoformat(), "rows": rows}})
            return run
        raise AssertionError("unreachable")

    async def missed_slots(self, name: str, now: datetime | None = None) -> list[datetime]:
        """Slots since the job's newest recorded slot (within the horizon) not finished."""
        spec = job_spec(name)
        now = utc(now) if now is not None else self._clock()
        async with self._engine.begin() as conn:
            latest = await repository.latest_slot(conn, name)
            if latest is None:
                return [slot_of(now, spec.period)]
            since = max(latest - spec.period, now - self._horizon)
            done = await repository.finished_slots(conn, name, since)
        missing = [s for s in slots_between(since, now, spec.period) if s not in done]
        return missing if spec.catch_up_all else missing[-1:]

    async def catch_up(self, now: datetime | None = None) -> list[JobRun]:
        """Replays what was missed while no replica ran (oldest first)."""
        runs: list[JobRun] = []
        for name in JOBS:
            for slot in await self.missed_slots(name, now):
                if self._closing:
                    return runs
                run = await self.run(name, slot)
                if run is not None:
                    runs.append(run)
        return runs

    def spawn(self, name: str, as_of: datetime | None = None) -> asyncio.Task[JobRun | None] | None:
        """Starts a scheduled run as a task :meth:`drain` will wait for."""
        if self._closing:
            return None
        task = asyncio.create_task(self._guarded(name, as_of), name=f"job:{name}")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def _guarded(self, name: str, as_of: datetime | None) -> JobRun | None:
        try:
            return await self.run(name, as_of)
        except JobBusy:
            logger.info("job busy elsewhere", extra={"fields": {"job": name}})
        except Exception:
            logger.exception("job run could not be recorded", extra={"fields": {"job": name}})
        return None

    async def drain(self) -> None:
        """Takes no new runs and waits for those in flight (retries stop backing off)."""
        self._closing = True
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
