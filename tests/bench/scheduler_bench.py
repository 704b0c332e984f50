"""Scheduler benchmark: the daily-summary job for 10,000 users (BENCH_SUMMARY_USERS) x 100 events against one
hand-written aggregate SQL over the same rows (same run, same database), and the idle
check over 100,000 active sessions.

The job runs as in production: the runner in this process, auth, sessions and ingest as
real processes answering its streamed reporting calls.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.scheduler.domain import DAILY_SUMMARIES, IDLE_CHECK
from services.scheduler.jobs import JobConfig, JobContext
from services.scheduler.mesh import GrpcPeers
from services.scheduler.runner import JobRunner
from tests.bench.harness import BenchEnv, Row
from workpulse.db import UnitOfWork, create_engine
from workpulse.grpc_client import channel
from workpulse.identity import ServiceIdentity, load_private_key
from workpulse.postgres import MAINTENANCE_ROLE

USERS = int(os.environ.get("BENCH_SUMMARY_USERS", "10000"))
EVENTS_PER_USER = 100
ACTIVE_SESSIONS = 100_000
DAY = datetime(2026, 5, 4, tzinfo=UTC)
IDLE_AT = datetime(2026, 5, 6, 12, 0, tzinfo=UTC)
ORGS = 20

_APPS = "array['VS Code','Chrome','Slack','Figma','Terminal','Zoom','Mail','Notion']"

_SEED_USERS = """
insert into auth.organizations (id, name, timezone)
select ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'bench ' || g, 'UTC'
from generate_series(1, :orgs) g on conflict do nothing;
"""

_USERS = """
insert into auth.users (organization_id, id, email, name, password_hash, role)
select ('00000000-0000-4000-8000-' || lpad((1 + g % :orgs)::text, 12, '0'))::uuid, gen_random_uuid(),
       :tag || g || '@bench.example', 'Bench', 'x', 'employee'
from generate_series(1, :n) g
"""

# Two stopped sessions per user on DAY, then 100 events per user inside the first.
_SESSIONS = """
insert into sessions.work_sessions (organization_id, user_id, start_time, end_time, status)
select u.organization_id, u.id, :day + s.start_at, :day + s.end_at, 'stopped'
from auth.users u
cross join (values (interval '8 hours', interval '12 hours'), (interval '13 hours', interval '18 hours'))
     as s(start_at, end_at)
where u.email like 'day%'
"""

_EVENTS = f"""
insert into ingest.activity_logs (organization_id, session_id, user_id, "timestamp", activity_type,
                                  duration_seconds, app_name, client_event_id)
select s.organization_id, s.id, s.user_id, s.start_time + i * interval '2 minutes 24 seconds',
       case when i % 5 = 4 then 'idle' else 'active' end, 30 + (i * 37) % 200,
       ({_APPS})[1 + (i * 7 + abs(hashtext(s.user_id::text))) % 8], 'e' || i
from sessions.work_sessions s cross join generate_series(0, {EVENTS_PER_USER - 1}) i
where s.start_time = :day + interval '8 hours'
"""

# Half the active sessions went quiet 20 minutes ago, half are busy.
_ACTIVE = """
insert into sessions.work_sessions
    (organization_id, user_id, start_time, status, last_activity_at, last_active_at, last_received_at)
select organization_id, id, :at - interval '3 hours', 'active', last_input, last_input,
       :at - interval '30 seconds'  -- every agent still reporting: idle, not agent-silent
from (select u.organization_id, u.id,
             case when row_number() over (order by u.id) % 2 = 0 then :at - interval '20 minutes'
                  else :at - interval '1 minute' end as last_input
      from auth.users u where u.email like 'idle%') candidates
"""

_BASELINE = """
insert into bench_summaries
with work as (
    select organization_id, user_id,
           sum(floor(extract(epoch from least(coalesce(end_time, :as_of), :as_of, :day_end)
                                      - greatest(start_time, :day_start))))::bigint as worked,
           count(*)::int as sessions
    from sessions.work_sessions
    where start_time < :day_end and coalesce(end_time, :as_of) > :day_start
    group by organization_id, user_id
), per_app as (
    select organization_id, user_id, app_name,
           coalesce(sum(duration_seconds) filter (where activity_type = 'active'), 0) as active,
           coalesce(sum(duration_seconds) filter (where activity_type = 'idle'), 0) as idle
    from ingest.activity_logs
    where "timestamp" >= :day_start and "timestamp" < :day_end
    group by organization_id, user_id, app_name
), activity as (
    select organization_id, user_id, sum(active)::bigint as active, sum(idle)::bigint as idle,
           (array_agg(app_name order by active desc, app_name) filter (where active > 0))[1:5] as apps,
           (array_agg(active order by active desc, app_name) filter (where active > 0))[1:5] as secs
    from per_app group by organization_id, user_id
)
select w.organization_id, w.user_id, cast(:day_start as date), 'UTC', w.worked, coalesce(a.active, 0),
       coalesce(a.idle, 0),
       case when coalesce(a.active + a.idle, 0) = 0 then 0
            else round(100.0 * a.active / (a.active + a.idle), 2) end,
       w.sessions, coalesce((select jsonb_agg(jsonb_build_array(n, sec) order by k)
                             from unnest(a.apps, a.secs) with ordinality as t(n, sec, k)), '[]'), now()
from work w left join activity a using (organization_id, user_id)
on conflict (organization_id, user_id, date) do update set total_work_seconds = excluded.total_work_seconds,
   active_seconds = excluded.active_seconds, idle_seconds = excluded.idle_seconds,
   productivity_score = excluded.productivity_score, sessions_count = excluded.sessions_count,
   top_apps = excluded.top_apps
"""


async def _seed(owner: AsyncEngine) -> None:
    async with owner.begin() as conn:
        await conn.execute(text(_SEED_USERS), {"orgs": ORGS})
        await conn.execute(text(_USERS), {"orgs": ORGS, "tag": "day", "n": USERS})
        await conn.execute(text("select ingest.ensure_activity_partitions(:a, :b)"), {"a": DAY.date(), "b": DAY.date()})
        await conn.execute(text(_SESSIONS), {"day": DAY})
        await conn.execute(text(_EVENTS), {"day": DAY})
        await conn.execute(text("create table bench_summaries (like scheduler.daily_summaries including all)"))
    await _analyze(owner, "auth.users", "sessions.work_sessions", "ingest.activity_logs")


async def _analyze(owner: AsyncEngine, *tables: str) -> None:
    """What autovacuum would do after a bulk load: fresh planner statistics."""
    async with owner.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in tables:
            await auto.execute(text(f"analyze {table}"))


async def _seed_active(owner: AsyncEngine) -> None:
    async with owner.begin() as conn:
        await conn.execute(text(_USERS), {"orgs": ORGS, "tag": "idle", "n": ACTIVE_SESSIONS})
        await conn.execute(text(_ACTIVE), {"at": IDLE_AT})
    await _analyze(owner, "auth.users", "sessions.work_sessions")


async def _baseline(owner: AsyncEngine) -> tuple[float, int]:
    params = {"as_of": DAY + timedelta(days=1), "day_start": DAY, "day_end": DAY + timedelta(days=1)}
    async with owner.begin() as conn:
        await conn.execute(text("truncate bench_summaries"))
    started = time.perf_counter()
    async with owner.begin() as conn:
        result = await conn.execute(text(_BASELINE), params)
    return time.perf_counter() - started, int(result.rowcount or 0)


async def run(env: BenchEnv) -> list[Row]:
    owner = create_async_engine(env.database_url, pool_size=2)
    await _seed(owner)
    mesh = env.start_mesh(only=("auth", "sessions", "ingest"))
    maintenance = create_engine(env.database_url, role=MAINTENANCE_ROLE, pool_size=4)
    identity = ServiceIdentity(
        "scheduler", load_private_key(env.work_dir / "keys" / "service_private.pem"), "workpulse"
    )
    channels = [channel(mesh.address(n), identity=identity) for n in ("auth", "sessions", "ingest")]
    peers = GrpcPeers(*channels, identity=identity, zone_ttl=300.0)
    runner = JobRunner(maintenance, JobContext(UnitOfWork(maintenance), peers, JobConfig()), runner_id="bench")
    rows: list[Row] = []
    try:
        await _baseline(owner)  # warm the caches both ways before timing either
        as_of = DAY + timedelta(days=1) + JobConfig().summary_settle  # the slot that summarizes DAY
        started = time.perf_counter()
        job = await runner.run(DAILY_SUMMARIES, as_of)
        job_seconds = time.perf_counter() - started
        assert job is not None and job.error is None, job
        started = time.perf_counter()
        again = await runner.run(DAILY_SUMMARIES, as_of, manual=True)
        rerun_seconds = time.perf_counter() - started
        assert again is not None and again.error is None
        baseline_seconds, baseline_rows = await _baseline(owner)
        async with owner.connect() as conn:
            differing = (
                await conn.execute(
                    text(
                        "select count(*) from bench_summaries b full join scheduler.daily_summaries s "
                        "using (organization_id, user_id, date) where (b.total_work_seconds, b.active_seconds, "
                        "b.idle_seconds, b.productivity_score, b.sessions_count, b.top_apps) is distinct from "
                        "(s.total_work_seconds, s.active_seconds, s.idle_seconds, s.productivity_score, "
                        "s.sessions_count, s.top_apps)"
                    )
                )
            ).scalar()
        assert job.rows == baseline_rows == USERS and differing == 0, (job.rows, baseline_rows, differing)
        goal = "<= 2x the SQL"
        rows.append(
            Row(
                f"daily summaries {USERS:,} users x {EVENTS_PER_USER} events",
                "job s",
                job_seconds,
                baseline_seconds,
                "one aggregate SQL",
                goal,
            )
        )
        rows.append(
            Row(
                f"daily summaries {USERS:,} users x {EVENTS_PER_USER} events",
                "rerun by hand s",
                rerun_seconds,
                baseline_seconds,
                "one aggregate SQL",
                goal,
            )
        )

        await _seed_active(owner)
        await peers.user_zones(refresh=True)  # the idle check reads zones from a cache in steady state
        started = time.perf_counter()
        first = await runner.run(IDLE_CHECK, IDLE_AT)
        idle_first = time.perf_counter() - started
        assert first is not None and first.error is None and first.rows == ACTIVE_SESSIONS // 2, first
        started = time.perf_counter()
        steady = await runner.run(IDLE_CHECK, IDLE_AT + timedelta(minutes=1))
        idle_steady = time.perf_counter() - started
        assert steady is not None and steady.error is None and steady.rows == 0, steady
        scenario = "idle check 100k active sessions"
        rows.append(Row(scenario, "first run s (50k alerts+events)", idle_first, None, "", "< 1 s"))
        rows.append(Row(scenario, "next minute s (all known)", idle_steady, None, "", "< 1 s"))
    finally:
        for ch in channels:
            await ch.close()
        await maintenance.dispose()
        await owner.dispose()
    return rows
