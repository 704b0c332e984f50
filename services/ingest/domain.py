"""Activity events, sessions' windows and totals (no grpc, no SQL here; the rules that
admit events are in services/ingest/admission.py).

An event is identified by (session, client event id, timestamp). Events without a client
id get one derived from their content, so a blind retry of the same batch is recognised;
events the server stamps itself (no timestamp given) are unique by construction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum

from workpulse.errors import InvalidArgument

MAX_BATCH_EVENTS = 1000
MAX_DURATION_SECONDS = 86_400
MAX_APP_NAME = 255
MAX_URL = 2048
MAX_CLIENT_EVENT_ID = 128
MAX_TITLE = 1024
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
    title: str = ""


@dataclass(frozen=True, slots=True)
class IncomingBatch:
    """A request's events as columns: the i-th value of every list is event i's.

    How a stream's batch is read (messages.incoming_batch): a batch of 500 events is
    checked column by column and no object is made per event until it is admitted. A
    sequence of IncomingEvent converts with :meth:`of`."""

    activity_types: list[str]
    durations: list[int]
    app_names: list[str]
    urls: list[str]
    timestamps: list[datetime | None]
    screenshot_timestamps: list[datetime | None]
    client_event_ids: list[str]
    titles: list[str]

    @classmethod
    def of(cls, events: Sequence[IncomingEvent]) -> IncomingBatch:
        return cls(
            [e.activity_type for e in events],
            [e.duration_seconds for e in events],
            [e.app_name for e in events],
            [e.url for e in events],
            [e.timestamp for e in events],
            [e.screenshot_timestamp for e in events],
            [e.client_event_id for e in events],
            [e.title for e in events],
        )

    def __len__(self) -> int:
        return len(self.client_event_ids)

    def event(self, index: int) -> IncomingEvent:
        return IncomingEvent(
            self.activity_types[index],
            self.durations[index],
            self.app_names[index],
            self.urls[index],
            self.timestamps[index],
            self.screenshot_timestamps[index],
            self.client_event_ids[index],
            self.titles[index],
        )

    def shifted(self, shift: timedelta) -> IncomingBatch:
        """The batch with every given timestamp moved by ``shift`` (the server stamps the others)."""
        if not shift:
            return self
        stamps = [None if t is None else t + shift for t in self.timestamps]
        return replace(self, timestamps=stamps)


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


class NewEvent:
    """An admitted event, ready to be stored (if not already). Never changed once made.

    A plain class with slots rather than a frozen dataclass: a frozen dataclass sets each
    field through object.__setattr__, several times the cost of this constructor, and one
    is made for every stored event. ``key`` is kept, not computed: it is read several
    times per event on the way to the store and back.
    """

    __slots__ = (
        "activity_type",
        "app_name",
        "client_chose_id",
        "client_event_id",
        "duration_seconds",
        "key",
        "match_any_timestamp",
        "screenshot_timestamp",
        "timestamp",
        "title",
        "url",
    )

    def __init__(
        self,
        client_event_id: str,
        timestamp: datetime,
        activity_type: str,
        duration_seconds: int,
        app_name: str | None,
        url: str | None,
        screenshot_timestamp: datetime | None,
        match_any_timestamp: bool = False,
        client_chose_id: bool = False,
        title: str | None = None,
    ) -> None:
        self.client_event_id = client_event_id
        self.timestamp = timestamp
        self.activity_type = activity_type
        self.duration_seconds = duration_seconds
        self.app_name = app_name
        self.url = url
        self.screenshot_timestamp = screenshot_timestamp
        # A client id without a timestamp: the server stamped it, so a retry carries another
        # timestamp and is recognised by the client id alone.
        self.match_any_timestamp = match_any_timestamp
        # The client chose the id (not derived from the content, nor the server's): one id
        # names one event, so the same id stored with another timestamp is a conflict.
        self.client_chose_id = client_chose_id
        self.title = title
        self.key: tuple[str, datetime] = (client_event_id, timestamp)

    def _fields(self) -> tuple[object, ...]:
        return (
            self.client_event_id,
            self.timestamp,
            self.activity_type,
            self.duration_seconds,
            self.app_name,
            self.url,
            self.screenshot_timestamp,
            self.match_any_timestamp,
            self.client_chose_id,
            self.title,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NewEvent) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"NewEvent{self._fields()!r}"


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
    # When the last active event ended (its timestamp plus its duration): the user's last
    # input as far as the server knows; None when the events were all idle.
    last_active_at: datetime | None = None
    # The app of the latest event (by timestamp), for ACTIVITY_RECORDED where the user's
    # policy shares it; not part of the hand-off (sessions keeps no app).
    last_app_name: str | None = None

    def payload(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "active_seconds": self.active_seconds,
            "idle_seconds": self.idle_seconds,
            "last_activity_at": self.last_activity_at.isoformat(),
            "event_count": self.event_count,
            "last_active_at": None if self.last_active_at is None else self.last_active_at.isoformat(),
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
    """The outcome of one request's events, and the totals after it.

    Only the events not accepted get an outcome object (a batch is normally accepted
    whole, and 500 objects per batch would be made for nothing): the accepted events are
    the admitted ones not among them. :attr:`outcomes` builds every event's on demand."""

    size: int  # events in the request
    not_accepted: list[EventOutcome] = field(default_factory=list)  # in request order
    admitted: Sequence[NewEvent] = ()
    admitted_indices: Sequence[int] = ()  # each admitted event's index in the request
    session: SessionTotals | None = None
    # Stored events whose totals sessions has not applied yet (it was unreachable): a
    # success all the same, which a client must not resend.
    totals_pending: bool = False
    policy_version: int = 0  # of the caller's agent policy, as admission applied it

    def count(self, status: EventStatus) -> int:
        if status is EventStatus.ACCEPTED:
            return self.size - len(self.not_accepted)
        return sum(1 for o in self.not_accepted if o.status is status)

    @property
    def outcomes(self) -> list[EventOutcome]:
        """Every event's outcome, in request order."""
        other = {o.index for o in self.not_accepted}
        accepted = [
            EventOutcome(index, event.client_event_id, EventStatus.ACCEPTED)
            for index, event in zip(self.admitted_indices, self.admitted, strict=True)
            if index not in other
        ]
        return sorted([*self.not_accepted, *accepted], key=lambda o: o.index)


def require_uuid(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{field}: must be a UUID", field=field) from None


def require_session_id(value: str) -> str:
    return require_uuid(value, "session_id")


def totals_delta(window: SessionWindow, stored: Sequence[NewEvent]) -> TotalsDelta | None:
    """The totals the newly stored events add to the session, or None when nothing was new."""
    if not stored:
        return None
    active = idle = 0
    latest, app = stored[0].timestamp, stored[0].app_name
    last_active: datetime | None = None
    for e in stored:  # one pass (a commit's events, thousands): not one per sum
        if e.activity_type == "active":
            active += e.duration_seconds
            ended = e.timestamp + timedelta(seconds=e.duration_seconds)
            if last_active is None or ended > last_active:
                last_active = ended
        elif e.activity_type == "idle":
            idle += e.duration_seconds
        if e.timestamp > latest:
            latest, app = e.timestamp, e.app_name
    return TotalsDelta(
        organization_id=window.organization_id,
        session_id=window.session_id,
        user_id=window.user_id,
        active_seconds=active,
        idle_seconds=idle,
        last_activity_at=latest,
        event_count=len(stored),
        last_active_at=last_active,
        last_app_name=app,
    )
