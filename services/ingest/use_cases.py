"""Recording activity: check the caller and each event, store what is new, apply totals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from services.ingest.domain import (
    MAX_BATCH_EVENTS,
    Admission,
    BatchOutcome,
    EventOutcome,
    EventStatus,
    IncomingEvent,
    NewEvent,
    RejectReason,
    SessionTotals,
    SessionWindow,
    WriteResult,
    admit,
    require_session_id,
)
from workpulse.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from workpulse.identity import Principal


class SessionDirectory(Protocol):
    async def window(self, organization_id: str, session_id: str) -> SessionWindow: ...

    async def totals(self, organization_id: str, session_id: str) -> SessionTotals: ...


class EventWriter(Protocol):
    async def write(self, window: SessionWindow, events: list[NewEvent]) -> WriteResult: ...


class Budget(Protocol):
    async def spend(self, caller: Principal) -> None:
        """Counts one request or batch; RateLimited past the caller's budget."""


@dataclass
class Ingest:
    """What the use cases need, wired by the composition root (fakes in unit tests)."""

    sessions: SessionDirectory
    writer: EventWriter
    budget: Budget
    clock_skew: timedelta = timedelta(minutes=2)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


async def _admit(
    ingest: Ingest, caller: Principal, session_id: str, events: Sequence[IncomingEvent], *, require_timestamp: bool
) -> tuple[SessionWindow, Admission]:
    if not events:
        raise InvalidArgument("events: at least one event is required", field="events")
    if len(events) > MAX_BATCH_EVENTS:
        raise InvalidArgument(f"events: at most {MAX_BATCH_EVENTS} events per batch", field="events")
    org = caller.tenant()
    sid = require_session_id(session_id)
    await ingest.budget.spend(caller)
    window = await ingest.sessions.window(org, sid)
    if window.user_id != caller.subject:
        raise NotFound("session not found")  # only the owner records; others must not learn it exists
    return window, admit(
        events, window, now=ingest.clock(), skew=ingest.clock_skew, require_timestamp=require_timestamp
    )


async def _store(ingest: Ingest, window: SessionWindow, admission: Admission) -> BatchOutcome:
    outcomes = [*admission.rejected, *admission.repeated]
    if admission.admitted:
        result = await ingest.writer.write(window, [e for _, e in admission.admitted])
        for index, event in admission.admitted:
            status = EventStatus.ACCEPTED if event.key in result.stored else EventStatus.DUPLICATE
            outcomes.append(EventOutcome(index, event.client_event_id, status))
        totals = result.totals
    else:
        try:
            totals = await ingest.sessions.totals(window.organization_id, window.session_id)
        except Unavailable:
            if not admission.repeated:
                raise  # nothing of this request is stored: a resend is what it needs
            totals = None  # its events were stored by an earlier attempt
    outcomes.sort(key=lambda o: o.index)
    return BatchOutcome(outcomes, totals, totals_pending=totals is None)


async def record_batch(
    ingest: Ingest, caller: Principal, session_id: str, events: Sequence[IncomingEvent]
) -> BatchOutcome:
    """Each event accepted, a duplicate, or rejected with a reason; totals include the accepted."""
    window, admission = await _admit(ingest, caller, session_id, events, require_timestamp=True)
    return await _store(ingest, window, admission)


async def record_event(ingest: Ingest, caller: Principal, session_id: str, event: IncomingEvent) -> BatchOutcome:
    """One event (stamped by the server when it has no timestamp); a rejection fails the call."""
    window, admission = await _admit(ingest, caller, session_id, [event], require_timestamp=False)
    if admission.rejected:
        problem = admission.rejected[0]
        if problem.reason is RejectReason.AFTER_SESSION_END and event.timestamp is None:
            raise FailedPrecondition("session is stopped")
        raise InvalidArgument(problem.message, field=problem.message.split(":", 1)[0])
    return await _store(ingest, window, admission)
