"""Days summarized from their owners: work time from sessions, activity from ingest.

The nightly job summarizes finished days with it and the report use cases today's so far,
so a live "today" and the stored summary of a finished day are one computation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from services.scheduler import domain
from services.scheduler.domain import DailySummary, UserWindow
from services.scheduler.mesh import Peers


async def summarize_days(
    peers: Peers, windows: Sequence[UserWindow], as_of: datetime, top_apps: int
) -> list[tuple[UserWindow, DailySummary | None]]:
    """Each window with its summary, None when nothing happened in it."""
    if not windows:
        return []
    # Two services, asked at once.
    work_totals, activity_totals = await asyncio.gather(
        peers.work_totals(windows, as_of), peers.activity_totals(windows, top_apps)
    )
    work = {(t.organization_id, t.user_id, t.window_start): t for t in work_totals}
    activity = {(t.organization_id, t.user_id, t.window_start): t for t in activity_totals}
    found = []
    for w in windows:
        key = (w.organization_id, w.user_id, w.start)
        found.append((w, domain.summarize(w, work.get(key), activity.get(key))))
    return found


def zero(window: UserWindow) -> DailySummary:
    """The summary of a day in which nothing was recorded."""
    return DailySummary(window.organization_id, window.user_id, window.date, window.timezone, 0, 0, 0, 0.0, 0)


async def today_so_far(
    peers: Peers, users: Sequence[domain.UserZone], now: datetime, top_apps: int
) -> list[tuple[UserWindow, DailySummary | None]]:
    """Each user's current local day from its midnight up to ``now``, computed live (its
    ``computed_at`` is ``now``); None where nothing was recorded yet."""
    found = await summarize_days(peers, domain.day_so_far(list(users), now), now, top_apps)
    return [(w, replace(s, computed_at=now) if s is not None else None) for w, s in found]
