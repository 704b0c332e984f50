"""Recording activity: check the caller and each event, store what is new, apply totals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn, Protocol

from services.ingest.admission import Admission, EventCollection, admit
from services.ingest.domain import (
    MAX_BATCH_EVENTS,
    STREAM_CLOCK_ALLOWANCE,
    AgentClock,
    BatchOutcome,
    EventOutcome,
    EventStatus,
    IncomingBatch,
    IncomingEvent,
    NewEvent,
    RejectReason,
    SessionTotals,
    SessionWindow,
    WriteResult,
    refusal,
    require_session_id,
    require_uuid,
)
from workpulse.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from workpulse.identity import Principal


class SessionDirectory(Protocol):
    async def window(self, organization_id: str, session_id: str, *, fresh: bool = False) -> SessionWindow: ...

    async def totals(self, organization_id: str, session_id: str) -> SessionTotals: ...


class EventWriter(Protocol):
    async def write(self, window: SessionWindow, events: list[NewEvent], *, share_app: bool = False) -> WriteResult: ...


class SessionBounds(Protocol):
    async def close(self, organization_id: str, session_id: str) -> datetime:
        """Ends the session's window for good; its end (the same on every call)."""


class Budget(Protocol):
    async def spend(self, caller: Principal) -> None:
        """Counts one request or batch; RateLimited past the caller's budget."""


class CollectionPolicy(Protocol):
    """The callers' agent policies, as far as storing their events goes."""

    async def collection(self, organization_id: str, user_id: str) -> EventCollection:
        """What the user's policy lets ingest store and share, and the policy's version."""

    def known_version(self, organization_id: str) -> int:
        """The last version read (0: none yet), for answers that read nothing."""


@dataclass
class Ingest:
    """What the use cases need, wired by the composition root (fakes in unit tests)."""

    sessions: SessionDirectory
    writer: EventWriter
    budget: Budget
    bounds: SessionBounds
    policies: CollectionPolicy
    clock_skew: timedelta = timedelta(minutes=2)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


async def _admit(
    ingest: Ingest,
    caller: Principal,
    session_id: str,
    events: Sequence[IncomingEvent] | IncomingBatch,
    *,
    require_timestamp: bool,
    clock: AgentClock | None = None,
) -> tuple[SessionWindow, IncomingBatch, Admission, EventCollection]:
    if not len(events):
        raise InvalidArgument("events: at least one event is required", field="events")
    if len(events) > MAX_BATCH_EVENTS:
        raise InvalidArgument(f"events: at most {MAX_BATCH_EVENTS} events per batch", field="events")
    org = caller.tenant()
    sid = require_session_id(session_id)
    await ingest.budget.spend(caller)
    # Before the session is looked up, so even a batch refused for its session is
    # answered with the policy's current version (a cached read: no query per batch).
    collection = await ingest.policies.collection(org, caller.subject)
    window = await ingest.sessions.window(org, sid)
    if window.user_id != caller.subject:
        raise NotFound("session not found")  # only the owner records; others must not learn it exists
    batch = events if isinstance(events, IncomingBatch) else IncomingBatch.of(events)
    if clock is not None and clock.offset is not None:
        # One correction for the whole batch (AgentClock.corrected, per event, is the same).
        batch, skew = batch.shifted(clock.correction), STREAM_CLOCK_ALLOWANCE
    else:
        skew = ingest.clock_skew
    admission = admit(
        batch, window, now=ingest.clock(), skew=skew, require_timestamp=require_timestamp, collection=collection
    )
    if not window.stopped and any(r.reason is RejectReason.TIMESTAMP_IN_FUTURE for r in admission.rejected):
        # A cached active copy may predate a stop: an event that is after the end is
        # told so, not that it is in the future. Only refusals pay for the fresh read.
        window = await ingest.sessions.window(org, sid, fresh=True)
        if window.stopped:
            admission = admit(
                batch, window, now=ingest.clock(), skew=skew, require_timestamp=require_timestamp, collection=collection
            )
    return window, batch, admission, collection


async def _store(
    ingest: Ingest, window: SessionWindow, size: int, admission: Admission, collection: EventCollection
) -> BatchOutcome:
    not_accepted = [*admission.rejected, *admission.repeated]
    events, indices = admission.events, admission.indices
    if events:
        result = await ingest.writer.write(window, events, share_app=collection.share_current_app)
        # Normally every admitted event was new: then no event needs looking at again.
        if result.refused or len(result.stored) < len(events):
            for index, event in zip(indices, events, strict=True):
                if (reason := result.refused.get(event.key)) is not None:
                    not_accepted.append(refusal(index, event.client_event_id, reason))
                elif event.key not in result.stored:
                    not_accepted.append(EventOutcome(index, event.client_event_id, EventStatus.DUPLICATE))
        totals = result.totals
    else:
        try:
            totals = await ingest.sessions.totals(window.organization_id, window.session_id)
        except Unavailable:
            if not admission.repeated:
                raise  # nothing of this request is stored: a resend is what it needs
            totals = None  # its events were stored by an earlier attempt
    not_accepted.sort(key=lambda o: o.index)
    return BatchOutcome(
        size,
        not_accepted,
        events,
        indices,
        totals,
        totals_pending=totals is None,
        policy_version=collection.policy_version,
    )


async def record_batch(
    ingest: Ingest,
    caller: Principal,
    session_id: str,
    events: Sequence[IncomingEvent] | IncomingBatch,
    clock: AgentClock | None = None,
) -> BatchOutcome:
    """Each event accepted, a duplicate, or rejected with a reason; totals include the
    accepted. ``clock``: the sending agent's, when its stream measures it."""
    window, batch, admission, collection = await _admit(
        ingest, caller, session_id, events, require_timestamp=True, clock=clock
    )
    return await _store(ingest, window, len(batch), admission, collection)


async def record_event(ingest: Ingest, caller: Principal, session_id: str, event: IncomingEvent) -> BatchOutcome:
    """One event (stamped by the server when it has no timestamp); a rejection fails the call."""
    window, _, admission, collection = await _admit(ingest, caller, session_id, [event], require_timestamp=False)
    if admission.rejected:
        _refuse(admission.rejected[0], event)
    outcome = await _store(ingest, window, 1, admission, collection)
    if outcome.not_accepted and outcome.not_accepted[0].status is EventStatus.REJECTED:
        _refuse(outcome.not_accepted[0], event)
    return outcome


def _refuse(problem: EventOutcome, event: IncomingEvent) -> NoReturn:
    """The error of a single event's refusal."""
    if problem.reason is RejectReason.AFTER_SESSION_END and event.timestamp is None:
        raise FailedPrecondition("session is stopped")
    field = problem.message.split(":", 1)[0]
    if problem.reason is RejectReason.EVENT_ID_CONFLICT:
        raise AlreadyExists(problem.message, field=field)
    raise InvalidArgument(problem.message, field=field)


async def close_session(ingest: Ingest, organization_id: str, session_id: str) -> datetime:
    """The session's final end (the servicer declares CloseSession for services only)."""
    org = require_uuid(organization_id, "organization_id")
    return await ingest.bounds.close(org, require_session_id(session_id))


def known_policy_version(ingest: Ingest, caller: Principal) -> int:
    """The caller's policy version as last read, for a stream answer that read nothing."""
    return ingest.policies.known_version(caller.organization_id) if caller.organization_id else 0
