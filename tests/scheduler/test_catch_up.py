"""Downtime: the slots missed while no replica ran are replayed on start (all of them for
daily summaries, the latest for the checks), including one a crash left unfinished."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.engine import make_url

from services.scheduler.domain import ACTIVITY_PARTITIONS, DAILY_SUMMARIES, IDLE_CHECK, OVERTIME_CHECK
from tests.scheduler.conftest import Rig, World
from tests.scheduler.test_daily_summaries import busy_day, matches, stored
from tests.support import eventually, start_mesh

# Later than every other test's clock: job runs are global, and catch-up starts from the
# newest recorded slot.
LAST_RUN = datetime(2030, 1, 1, 20, 0, tzinfo=UTC)
BACK_UP = datetime(2030, 1, 2, 11, 7, tzinfo=UTC)


async def test_missed_slots_are_replayed_after_downtime(rig: Rig, world: World) -> None:
    runner = rig.runner(runner_id="before-downtime")
    assert await runner.run(DAILY_SUMMARIES, LAST_RUN) is not None
    # A crash mid-run left the next slot started but never finished.
    crashed = LAST_RUN + timedelta(minutes=15)
    async with rig.maintenance.begin() as conn:
        await conn.execute(
            text(
                "insert into scheduler.job_runs (job, slot, started_at, attempts, runner) "
                "values (:j, :s, :s, 1, 'crashed')"
            ),
            {"j": DAILY_SUMMARIES, "s": crashed},
        )
    # Midnights during the downtime: UTC (00:00) and UTC+14 (10:00 UTC).
    utc_day = await busy_day(world, await world.user(await world.organization()), "UTC", date(2030, 1, 1))
    kiri_org = await world.organization("Pacific/Kiritimati")
    kiri_day = await busy_day(world, await world.user(kiri_org), "Pacific/Kiritimati", date(2030, 1, 2))

    restarted = rig.runner(runner_id="after-downtime")
    missed = await restarted.missed_slots(DAILY_SUMMARIES, BACK_UP)
    expected = [LAST_RUN + timedelta(minutes=15 * i) for i in range(1, 61)]  # 20:15 .. 11:00
    assert missed == expected
    assert await restarted.missed_slots(IDLE_CHECK, BACK_UP) == [datetime(2030, 1, 2, 11, 7, tzinfo=UTC)]

    runs = await restarted.catch_up(BACK_UP)
    by_job: dict[str, list[datetime]] = {}
    for run in runs:
        assert run.error is None, run
        by_job.setdefault(run.job, []).append(run.slot)
    assert by_job[DAILY_SUMMARIES] == expected
    assert by_job[IDLE_CHECK] == [datetime(2030, 1, 2, 11, 7, tzinfo=UTC)]
    assert by_job[OVERTIME_CHECK] == [datetime(2030, 1, 2, 11, 0, tzinfo=UTC)]
    assert by_job[ACTIVITY_PARTITIONS] == [datetime(2030, 1, 2, 6, 0, tzinfo=UTC)]

    matches((await stored(world, utc_day.person))[0], utc_day)
    matches((await stored(world, kiri_day.person))[0], kiri_day)
    rows = await world.rows(
        "select attempts, runner, finished_at is not null from scheduler.job_runs where job = :j and slot = :s",
        j=DAILY_SUMMARIES,
        s=crashed,
    )
    assert rows == [(2, "after-downtime", True)]
    # The partitions job created next week's activity-log partitions.
    parts = await world.rows(
        "select relname from pg_class where relkind = 'r' "
        "and relname between 'activity_logs_p20300102' and 'activity_logs_p20300109'"
    )
    assert len(parts) == 8
    # Nothing is left to catch up.
    assert await restarted.catch_up(BACK_UP) == []


@pytest.fixture
def unmigrated_database(database_url: str) -> Iterator[str]:
    """An empty database beside the run's: the scheduler's tables do not exist there."""
    name = f"wp_unmigrated_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()


async def test_a_failed_catch_up_at_start_is_logged(
    unmigrated_database: str, mesh_env: dict[str, str], tmp_path: Path
) -> None:
    # Started before its migrations ran: the catch-up cannot read the job runs. The process
    # keeps serving, and the operator reads why nothing was replayed.
    env = {**mesh_env, "DATABASE_URL": unmigrated_database, "LOG_LEVEL": "WARNING"}
    mesh = await asyncio.to_thread(start_mesh, env, tmp_path, ("scheduler",))
    log = tmp_path / "scheduler.log"

    async def logged() -> dict[str, Any] | None:
        for line in log.read_text().splitlines():
            if line.startswith("{") and json.loads(line)["msg"] == "catch-up at start failed":
                found: dict[str, Any] = json.loads(line)
                return found
        return None

    try:
        entry = await eventually(logged, timeout=20, what="the catch-up failure in the scheduler's log")
        assert entry["level"] == "ERROR" and entry["logger"] == "workpulse.scheduler"
        assert 'relation "scheduler.job_runs" does not exist' in entry["exc"]
        assert await asyncio.to_thread(mesh.processes["scheduler"].healthy)
    finally:
        await asyncio.to_thread(mesh.stop)
