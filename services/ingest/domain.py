"""Activity events and the rules that admit them into a session (no grpc, no SQL here).

An event is identified by (session, client event id, timestamp). Events without a client
id get one derived from their content, so a blind retry of the same batch is recognised;
events the server stamps itself (no timestamp given) are unique by construction.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum

from workpulse.errors import InvalidArgument
from workpulse.text import CONTROL_MESSAGE, has_control_character

MAX_BATCH_EVENTS = 1000
MAX_DURATION_SECONDS = 86_400
MAX_APP_NAME = 255
MAX_URL = 2048
MAX_CLIENT_EVENT_ID = 128
# The largest clock-skew allowance an operator may set: no event of a session is ever
# stored stamped earlier than its start less this (the de-duplication search relies on it).
MAX_CLOCK_SKEW = timedelta(hours=1)
ACTIVITY_TYPES = ("active", "idle")
# The allowance of a stream whose agent sends its clock: its timestamps are corrected by
# the measured offset, so only the measurement's error is left to allow for.
STREAM_CLOCK_ALLOWANCE = timedelta(seconds=2)


class EventStatus(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class RejectReason(Enum):
    INVALID_DURATION = "invalid_duration"
    UNKNOWN_ACTIVITY_TYPE = "unknown_activity_type"
    MISSING_TIMESTAMP = "missing_timestamp"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    BEFORE_SESSION_START = "before_session_start"
    AFTER_SESSION_END = "after_session_end"
    FIELD_TOO_LONG = "field_too_long"
    INVALID_TEXT = "invalid_text"
    EVENT_ID_CONFLICT = "event_id_conflict"


# What the store refuses once it sees what is stored (see ActivityStore): an event stamped
# after the session's final end, and an event id already stored with another timestamp.
REFUSAL_MESSAGES = {
    RejectReason.AFTER_SESSION_END: "timestamp: after the session ended",
    RejectReason.EVENT_ID_CONFLICT: "client_event_id: already stored in this session with another timestamp",
}


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """An event as a client sent it; nothing about it is trusted yet."""

    activity_type: str
    duration_seconds: int
    app_name: str = ""
    url: str = ""
    timestamp: datetime | None = None
    screenshot_timestamp: datetime | None = None
    client_event_id: str = ""


@dataclass
class AgentClock:
    """The offset of one agent's clock, measured over its stream.

    Each batch says when the agent sent it; the server's clock on arrival minus that is
    the offset plus the network's delay, which only ever adds: the smallest difference
    seen is the best estimate. Timestamps are corrected only when the offset exceeds the
    stream's allowance (a synchronised clock's stamps stay exactly as sent), and by whole
    seconds, so a resend on a new stream, measured again, keeps its timestamp (and so
    its identity) in all but rare cases; where it does not, the event's id is already
    stored with the other timestamp and the resend is refused, never counted twice.
    """

    offset: timedelta | None = None

    def observe(self, agent_time: datetime, arrived: datetime) -> None:
        difference = arrived - agent_time
        if self.offset is None or difference < self.offset:
            self.offset = difference

    @property
    def correction(self) -> timedelta:
        if self.offset is None or abs(self.offset) <= STREAM_CLOCK_ALLOWANCE:
            return timedelta(0)
        return timedelta(seconds=round(self.offset.total_seconds()))

    def corrected(self, event: IncomingEvent) -> IncomingEvent:
        shift = self.correction
        if not shift or event.timestamp is None:
            return event
        return replace(event, timestamp=event.timestamp + shift)


@dataclass(frozen=True, slots=True)
class SessionWindow:
    """What ingest needs to know of a session: whose it is and when it ran.

    A copy may be a few seconds old, so ``end_time`` here only refuses early what the
    store refuses anyway: the session's final end is its bounds row, read under a lock
    by every write (see ActivityStore), never a cached copy.
    """

    organization_id: str
    session_id: str
    user_id: str
    start_time: datetime
    end_time: datetime | None

    @property
    def stopped(self) -> bool:
        return self.end_time is not None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An admitted event, ready to be stored (if not already)."""

    client_event_id: str
    timestamp: datetime
    activity_type: str
    duration_seconds: int
    app_name: str | None
    url: str | None
    screenshot_timestamp: datetime | None
    # A client id without a timestamp: the server stamped it, so a retry carries another
    # timestamp and is recognised by the client id alone.
    match_any_timestamp: bool = False
    # The client chose the id (not derived from the content, nor the server's): one id
    # names one event, so the same id stored with another timestamp is a conflict.
    client_chose_id: bool = False

    @property
    def key(self) -> tuple[str, datetime]:
        return self.client_event_id, self.timestamp


@dataclass(frozen=True, slots=True)
class EventOutcome:
    index: int
    client_event_id: str
    status: EventStatus
    reason: RejectReason | None = None
    message: str = ""


def refusal(index: int, client_event_id: str, reason: RejectReason) -> EventOutcome:
    """The outcome of an event refused for one of REFUSAL_MESSAGES' reasons."""
    return EventOutcome(index, client_event_id, EventStatus.REJECTED, reason, REFUSAL_MESSAGES[reason])


@dataclass(frozen=True, slots=True)
class SessionTotals:
    session_id: str
    total_active_seconds: int
    total_idle_seconds: int
    last_activity_at: datetime | None
    version: int
    status: str


@dataclass(frozen=True, slots=True)
class TotalsDelta:
    """What a set of newly stored events adds to their session."""

    organization_id: str
    session_id: str
    user_id: str
    active_seconds: int
    idle_seconds: int
    last_activity_at: datetime
    event_count: int

    def payload(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "active_seconds": self.active_seconds,
            "idle_seconds": self.idle_seconds,
            "last_activity_at": self.last_activity_at.isoformat(),
            "event_count": self.event_count,
        }


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Which of a write's events were new, and the session totals once they are applied;
    None when the events are durable but sessions could not apply them yet (pending)."""

    stored: frozenset[tuple[str, datetime]]
    totals: SessionTotals | None
    # Admitted events the store refused on what it found stored (REFUSAL_MESSAGES).
    refused: Mapping[tuple[str, datetime], RejectReason] = field(default_factory=dict)


@dataclass
class BatchOutcome:
    """Per-event outcomes of one request, in request order, and the totals after it."""

    outcomes: list[EventOutcome]
    session: SessionTotals | None = None
    # Stored events whose totals sessions has not applied yet (it was unreachable): a
    # success all the same, which a client must not resend.
    totals_pending: bool = False

    def count(self, status: EventStatus) -> int:
        return sum(1 for o in self.outcomes if o.status is status)

    @property
    def not_accepted(self) -> list[EventOutcome]:
        return [o for o in self.outcomes if o.status is not EventStatus.ACCEPTED]


@dataclass
class Admission:
    """The result of checking a request's events against the session window."""

    admitted: list[tuple[int, NewEvent]] = field(default_factory=list)
    rejected: list[EventOutcome] = field(default_factory=list)
    repeated: list[EventOutcome] = field(default_factory=list)


def require_uuid(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{field}: must be a UUID", field=field) from None


def require_session_id(value: str) -> str:
    return require_uuid(value, "session_id")


def derive_client_event_id(session_id: str, event: IncomingEvent, timestamp: datetime) -> str:
    """A stable id from the content, so resending the same event is a duplicate."""
    content = "\x1f".join(
        (
            session_id,
            timestamp.isoformat(),
            event.activity_type,
            str(event.duration_seconds),
            event.app_name,
            event.url,
        )
    )
    return "sha256:" + hashlib.sha256(content.encode()).hexdigest()[:40]


def _check(
    event: IncomingEvent, window: SessionWindow, now: datetime, skew: timedelta
) -> tuple[RejectReason, str] | None:
    if event.activity_type not in ACTIVITY_TYPES:
        return RejectReason.UNKNOWN_ACTIVITY_TYPE, "activity_type: must be 'active' or 'idle'"
    if not 0 <= event.duration_seconds <= MAX_DURATION_SECONDS:
        return RejectReason.INVALID_DURATION, f"duration_seconds: must be 0..{MAX_DURATION_SECONDS}"
    if len(event.app_name) > MAX_APP_NAME:
        return RejectReason.FIELD_TOO_LONG, f"app_name: at most {MAX_APP_NAME} characters"
    if len(event.url) > MAX_URL:
        return RejectReason.FIELD_TOO_LONG, f"url: at most {MAX_URL} characters"
    if len(event.client_event_id) > MAX_CLIENT_EVENT_ID:
        return RejectReason.FIELD_TOO_LONG, f"client_event_id: at most {MAX_CLIENT_EVENT_ID} characters"
    for name in ("app_name", "url", "client_event_id"):
        if has_control_character(getattr(event, name)):
            return RejectReason.INVALID_TEXT, f"{name}: {CONTROL_MESSAGE}"
    if event.timestamp is None and window.end_time is not None:
        # Stamped by the server's clock, which needs no skew allowance: the session is over.
        return RejectReason.AFTER_SESSION_END, "session: stopped"
    stamp = event.timestamp or now
    if stamp < window.start_time - skew:
        return RejectReason.BEFORE_SESSION_START, "timestamp: before the session started"
    if window.end_time is not None and stamp > window.end_time:
        # A stop is final: no allowance after it (the store enforces it under a lock too).
        return RejectReason.AFTER_SESSION_END, REFUSAL_MESSAGES[RejectReason.AFTER_SESSION_END]
    if stamp > now + skew:
        return RejectReason.TIMESTAMP_IN_FUTURE, "timestamp: in the future"
    return None


def admit(
    events: Sequence[IncomingEvent],
    window: SessionWindow,
    *,
    now: datetime,
    skew: timedelta,
    require_timestamp: bool,
) -> Admission:
    """Checks each event; rejected ones get a reason, repeats within the request are duplicates."""
    result = Admission()
    seen: set[tuple[str, datetime]] = set()
    chosen: dict[str, datetime] = {}
    for index, event in enumerate(events):
        if event.timestamp is None and require_timestamp:
            result.rejected.append(
                EventOutcome(
                    index,
                    event.client_event_id,
                    EventStatus.REJECTED,
                    RejectReason.MISSING_TIMESTAMP,
                    "timestamp: required",
                )
            )
            continue
        problem = _check(event, window, now, skew)
        if problem is not None:
            result.rejected.append(EventOutcome(index, event.client_event_id, EventStatus.REJECTED, *problem))
            continue
        stamp = event.timestamp or now
        if event.client_event_id:
            client_id = event.client_event_id
        elif event.timestamp is not None:
            client_id = derive_client_event_id(window.session_id, event, stamp)
        else:
            # Stamped by the server: two such events are two observations, never a retry.
            client_id = "server:" + uuid.uuid4().hex
        new = NewEvent(
            client_id,
            stamp,
            event.activity_type,
            event.duration_seconds,
            event.app_name or None,
            event.url or None,
            event.screenshot_timestamp,
            match_any_timestamp=bool(event.client_event_id) and event.timestamp is None,
            client_chose_id=bool(event.client_event_id),
        )
        if new.key in seen:
            result.repeated.append(EventOutcome(index, client_id, EventStatus.DUPLICATE))
            continue
        if new.client_chose_id and chosen.setdefault(client_id, stamp) != stamp:
            reason = RejectReason.EVENT_ID_CONFLICT
            result.rejected.append(
                EventOutcome(index, client_id, EventStatus.REJECTED, reason, REFUSAL_MESSAGES[reason])
            )
            continue
        seen.add(new.key)
        result.admitted.append((index, new))
    return result


def totals_delta(window: SessionWindow, stored: Sequence[NewEvent]) -> TotalsDelta | None:
    """The totals the newly stored events add to the session, or None when nothing was new."""
    if not stored:
        return None
    return TotalsDelta(
        organization_id=window.organization_id,
        session_id=window.session_id,
        user_id=window.user_id,
        active_seconds=sum(e.duration_seconds for e in stored if e.activity_type == "active"),
        idle_seconds=sum(e.duration_seconds for e in stored if e.activity_type == "idle"),
        last_activity_at=max(e.timestamp for e in stored),
        event_count=len(stored),
    )
