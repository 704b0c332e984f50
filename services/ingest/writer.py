"""Writing activity: concurrent writes share a transaction (the kernel's group commit,
one queue for every organization), the store commits them, the totals hand-off answers
each write.

Under load (100 requests on one session, many agents of one organization, or requests of
many organizations at once) requests share one transaction and one hand-off call instead
of one commit each or queueing on row locks; a lone request is written at once.
"""

from __future__ import annotations

from services.ingest.batch_store import ActivityStore, ActivityWrite, StoredBatch
from services.ingest.domain import NewEvent, SessionWindow, WriteResult
from services.ingest.handoff import TotalsHandoff
from workpulse import faults
from workpulse.errors import Unavailable
from workpulse.group_commit import GroupCommit


class ActivityWriter:
    def __init__(
        self, store: ActivityStore, handoff: TotalsHandoff, *, max_events: int = 4000, max_concurrent: int = 4
    ) -> None:
        self._store = store
        self._handoff = handoff
        # One key: a commit takes queued writes of any organizations (the store points
        # the transaction at each in turn).
        self._group: GroupCommit[None, ActivityWrite, StoredBatch, WriteResult] = GroupCommit(
            self._commit,
            self._complete,
            size=lambda write: len(write.events),
            max_size=max_events,
            max_concurrent=max_concurrent,
        )

    async def write(self, window: SessionWindow, events: list[NewEvent], *, share_app: bool = False) -> WriteResult:
        """``share_app``: whether the caller's policy shares their current app (the
        ACTIVITY_RECORDED of the write names it)."""
        return await self._group.submit(None, ActivityWrite(window, events, share_app))

    async def _commit(self, _: None, writes: list[ActivityWrite]) -> StoredBatch:
        stored = await self._store.store(writes)
        # Tests kill here: committed hand-offs not yet applied (redelivery or a resend must settle them).
        faults.reached("ingest.after_commit")
        if len({w.window.organization_id for w in writes}) > 1:
            faults.reached("ingest.after_shared_commit")  # the same, in a commit of several tenants
        return stored

    async def _complete(
        self, _: None, writes: list[ActivityWrite], stored: StoredBatch
    ) -> list[WriteResult | BaseException]:
        sessions = {(w.window.organization_id, w.window.session_id) for w in writes}
        totals = await self._handoff.settle_batch(stored.handoffs, stored.repeated, sessions)
        results: list[WriteResult | BaseException] = []
        for write, fresh, refused in zip(writes, stored.fresh, stored.refused, strict=True):
            outcome = totals[(write.window.organization_id, write.window.session_id)]
            keys = frozenset(e.key for e in fresh)
            if isinstance(outcome, Unavailable):
                # Committed with their hand-off: redelivery (or the next write to the
                # session) applies it. Answering an error would invite a resend, and a
                # resend of events without ids would be stored again.
                results.append(WriteResult(keys, None, refused))
            else:
                results.append(outcome if isinstance(outcome, BaseException) else WriteResult(keys, outcome, refused))
        return results

    async def close(self) -> None:
        """Waits for writes in progress (their events are committed or rolled back)."""
        await self._group.close()
