"""The jobs themselves: each a plain async function of an as-of time, set-based end to end.

Each reads what it needs from its peers in a few streamed calls, computes in memory per
zone (never per-user queries), and writes with one upsert or one insert-with-outbox
statement, so a second run (sequential or concurrent) converges on the same rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from services.scheduler import domain, repository
from services.scheduler.domain import (
    ACTIVITY_PARTITIONS,
    DAILY_SUMMARIES,
    IDLE_CHECK,
    JOBS,
    OVERTIME_CHECK,
    Thresholds,
)
from services.scheduler.mesh import Peers
from services.scheduler.summaries import summarize_days
from workpulse.db import UnitOfWork


@dataclass(frozen=True)
class JobConfig:
    top_apps: int = 5
    partition_days_ahead: int = 7
    # 0 keeps every activity-log partition (retention is off unless configured).
    activity_retention_days: int = 0
    # How long after a local midnight the scheduled summary of the day waits.
    summary_settle: timedelta = timedelta(minutes=15)
    defaults: Thresholds = field(default_factory=Thresholds)


class RaisedAlerts:
    """The (session, local day) pairs this process already wrote an INACTIVE_ALERT for (or
    found one), so a session that stays idle costs nothing on later checks. Only a
    shortcut: the unique index decides, and a fresh process simply relearns."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, date]] = set()

    def known(self, session_id: str, day: date) -> bool:
        return (session_id, day) in self._seen

    def remember(self, drafts: list[domain.AlertDraft], today: date) -> None:
        self._seen = {key for key in self._seen if key[1] >= today - timedelta(days=1)}
        self._seen.update((d.session_id or "", d.alert_date) for d in drafts)


@dataclass(frozen=True)
class JobContext:
    """What every job needs: the maintenance unit of work (cross-tenant, service-only path),
    the peers it asks, and what this process remembers between runs."""

    maintenance: UnitOfWork
    peers: Peers
    config: JobConfig = field(default_factory=JobConfig)
    raised: RaisedAlerts = field(default_factory=RaisedAlerts)


JobBody = Callable[[JobContext, datetime, bool], Awaitable[int]]


async def daily_summaries(ctx: JobContext, as_of: datetime, manual: bool) -> int:
    """Summarizes the local days that ended in the slot before this one (the settle time
    later); a run by hand covers the whole day before ``as_of``: every user's most recently
    finished local day."""
    if manual:
        until, lookback = as_of, timedelta(days=1)
    else:
        # A scheduled run waits out the settle time, so events recorded just before midnight
        # and uploaded just after it still count.
        until, lookback = as_of - ctx.config.summary_settle, JOBS[DAILY_SUMMARIES].period
    zones = await ctx.peers.user_zones(refresh=True)
    windows = domain.days_ended_between(zones, until - lookback, until)
    found = await summarize_days(ctx.peers, windows, as_of, ctx.config.top_apps)
    summaries = [summary for _, summary in found if summary is not None]
    if not summaries:
        return 0
    async with ctx.maintenance.unscoped() as conn:
        await repository.upsert_summaries(conn, summaries, as_of)
    return len(summaries)


async def idle_check(ctx: JobContext, as_of: datetime, manual: bool) -> int:
    """One INACTIVE_ALERT per idle session per local day; alerts of sessions that are no
    longer idle are marked resolved. A session whose agent sent nothing for longer than
    its organization's allowance is agent-silent, not idle: it gets no alert, and an alert
    it has stays unresolved (nobody can tell whether the user came back)."""
    async with ctx.maintenance.unscoped() as conn:
        by_org = await repository.all_thresholds(conn)
    idle = await ctx.peers.idle_sessions(as_of, ctx.config.defaults, by_org)
    allowances = await ctx.peers.agent_silence({s.organization_id for s in idle}) if idle else {}
    default = domain.DEFAULT_AGENT_SILENCE_SECONDS
    silent = {s.session_id for s in idle if s.agent_silent(allowances.get(s.organization_id, default))}
    zones = {(z.organization_id, z.user_id): z.timezone for z in await ctx.peers.user_zones()} if idle else {}
    day_of_zone: dict[str, date] = {}
    drafts = []
    for s in idle:
        if s.session_id in silent:
            continue
        tz = zones.get((s.organization_id, s.user_id), "UTC")
        day = day_of_zone.get(tz) or day_of_zone.setdefault(tz, domain.local_date(tz, as_of))
        if not ctx.raised.known(s.session_id, day):
            drafts.append(domain.inactive_alert(s.organization_id, s.user_id, s.session_id, day, s.idle_seconds))
    async with ctx.maintenance.unscoped() as conn:
        raised = await repository.insert_alerts(conn, drafts, as_of)
        # Idle or silent, the user is not known to be back at work: their alerts stay open.
        await repository.resolve_inactive(conn, [s.session_id for s in idle], as_of, (as_of - timedelta(days=2)).date())
    # Committed: every attempted (session, day) now has its alert.
    ctx.raised.remember(drafts, as_of.date())
    return raised


async def overtime_check(ctx: JobContext, as_of: datetime, manual: bool) -> int:
    """One OVERTIME_ALERT per user per local day once the day's work passes the limit."""
    windows = domain.day_so_far(await ctx.peers.user_zones(), as_of)
    if not windows:
        return 0
    async with ctx.maintenance.unscoped() as conn:
        by_org = await repository.all_thresholds(conn)
    by_start = {(w.organization_id, w.user_id, w.start): w for w in windows}
    drafts = []
    for total in await ctx.peers.work_totals(windows, as_of):
        w = by_start.get((total.organization_id, total.user_id, total.window_start))
        limit = by_org.get(total.organization_id, ctx.config.defaults).overtime_hours
        if w is not None and total.worked_seconds > limit * 3600:
            drafts.append(domain.overtime_alert(w.organization_id, w.user_id, w.date, total.worked_seconds, limit))
    async with ctx.maintenance.unscoped() as conn:
        return await repository.insert_alerts(conn, drafts, as_of)


async def activity_partitions(ctx: JobContext, as_of: datetime, manual: bool) -> int:
    """Creates activity-log partitions ahead of time; drops expired ones if retention is set."""
    created, dropped = await ctx.peers.ensure_partitions(
        as_of, ctx.config.partition_days_ahead, ctx.config.activity_retention_days
    )
    return len(created) + len(dropped)


BODIES: dict[str, JobBody] = {
    DAILY_SUMMARIES: daily_summaries,
    IDLE_CHECK: idle_check,
    OVERTIME_CHECK: overtime_check,
    ACTIVITY_PARTITIONS: activity_partitions,
}
