"""Admitting a request's events into a session: the text the caller's agent policy does
not collect dropped, each event checked against the session's window and the limits
(rejected with a reason), repeats within the request found, ids derived for events
without one. Pure rules: no grpc, no SQL.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import cast

from services.ingest.domain import (
    ACTIVITY_TYPES,
    MAX_APP_NAME,
    MAX_CLIENT_EVENT_ID,
    MAX_DURATION_SECONDS,
    MAX_TITLE,
    MAX_URL,
    REFUSAL_MESSAGES,
    EventOutcome,
    EventStatus,
    IncomingBatch,
    IncomingEvent,
    NewEvent,
    RejectReason,
    SessionWindow,
)
from workpulse.text import CONTROL_MESSAGE, has_control_character

_ACTIVITY_TYPE_SET = frozenset(ACTIVITY_TYPES)


@dataclass(frozen=True, slots=True)
class EventCollection:
    """What the caller's agent policy lets leave the device (the server drops the rest,
    whatever an agent sends), whether managers see the app of their latest activity
    (ACTIVITY_RECORDED's appName), and that policy's version."""

    titles: bool = True
    urls: bool = True
    policy_version: int = 0
    share_current_app: bool = True


def collected(batch: IncomingBatch, collection: EventCollection) -> IncomingBatch:
    """The batch without the text the policy does not collect. Dropped before anything
    reads it: not checked (a dropped title cannot refuse its event), not stored, and not
    in a derived id either (a hash of a URL the organization chose not to collect would
    still tell whether a user visited it)."""
    if collection.titles and collection.urls:
        return batch
    blank = [""] * len(batch)
    titles = batch.titles if collection.titles else blank
    return replace(batch, titles=titles, urls=batch.urls if collection.urls else blank)


@dataclass
class Admission:
    """The result of checking a request's events against the session window."""

    events: list[NewEvent] = field(default_factory=list)  # the admitted, in request order
    indices: list[int] = field(default_factory=list)  # each admitted event's index in the request
    rejected: list[EventOutcome] = field(default_factory=list)
    repeated: list[EventOutcome] = field(default_factory=list)

    @property
    def admitted(self) -> list[tuple[int, NewEvent]]:
        return list(zip(self.indices, self.events, strict=True))


def derive_client_event_id(session_id: str, event: IncomingEvent, timestamp: datetime) -> str:
    """A stable id from the content, so resending the same event is a duplicate."""
    kind, seconds = event.activity_type, event.duration_seconds
    return _derived_id(session_id, timestamp, kind, seconds, event.app_name, event.url, event.title)


def _derived_id(
    session_id: str, timestamp: datetime, activity_type: str, seconds: int, app: str, url: str, title: str = ""
) -> str:
    parts = [session_id, timestamp.isoformat(), activity_type, str(seconds), app, url]
    if title:
        # Only when there is one: the ids of events without a title stay what they were
        # before titles existed, so a resend spanning that upgrade is still a duplicate.
        parts.append(title)
    return "sha256:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


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
    if len(event.title) > MAX_TITLE:
        return RejectReason.FIELD_TOO_LONG, f"title: at most {MAX_TITLE} characters"
    for name in ("app_name", "url", "client_event_id", "title"):
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


def _every_event_passes(batch: IncomingBatch, window: SessionWindow, now: datetime, skew: timedelta) -> bool:
    """Whether no event of the batch can fail _check, decided column by column (min, max,
    one search of the joined text: C loops) instead of event by event. When it cannot
    say so, _check decides each event (the reasons, and their order, are its own)."""
    stamps = cast(list[datetime], batch.timestamps)
    try:
        earliest, latest = min(stamps), max(stamps)
        in_window = (
            earliest >= window.start_time - skew
            and (window.end_time is None or latest <= window.end_time)
            and latest <= now + skew
        )
    except TypeError:  # None among them (stamped by the server): _check's rules for those apply
        return False
    return (
        in_window
        and set(batch.activity_types) <= _ACTIVITY_TYPE_SET
        and min(batch.durations) >= 0
        and max(batch.durations) <= MAX_DURATION_SECONDS
        and max(map(len, batch.app_names)) <= MAX_APP_NAME
        and max(map(len, batch.urls)) <= MAX_URL
        and max(map(len, batch.client_event_ids)) <= MAX_CLIENT_EVENT_ID
        and max(map(len, batch.titles)) <= MAX_TITLE
        # A control character is in one of the values exactly when it is in their join.
        and not has_control_character("".join(batch.app_names))
        and not has_control_character("".join(batch.urls))
        and not has_control_character("".join(batch.client_event_ids))
        and not has_control_character("".join(batch.titles))
    )


def admit(
    events: Sequence[IncomingEvent] | IncomingBatch,
    window: SessionWindow,
    *,
    now: datetime,
    skew: timedelta,
    require_timestamp: bool,
    collection: EventCollection = EventCollection(),
) -> Admission:
    """Checks each event; rejected ones get a reason, repeats within the request are duplicates."""
    batch = collected(events if isinstance(events, IncomingBatch) else IncomingBatch.of(events), collection)
    result = Admission()
    if not len(batch):
        return result
    problems: dict[int, tuple[RejectReason, str]] = {}
    passes = _every_event_passes(batch, window, now, skew)
    ids = batch.client_event_ids
    if passes and all(ids) and len(set(ids)) == len(ids):
        # An agent's batch: every event valid, stamped, with its own id. No two events can
        # repeat or conflict, so what the loop below would do reduces to this.
        result.events = [
            NewEvent(cid, stamp, kind, seconds, app or None, url or None, shot, False, True, title or None)
            for cid, stamp, kind, seconds, app, url, shot, title in zip(
                ids,
                cast(list[datetime], batch.timestamps),
                batch.activity_types,
                batch.durations,
                batch.app_names,
                batch.urls,
                batch.screenshot_timestamps,
                batch.titles,
                strict=True,
            )
        ]
        result.indices = list(range(len(ids)))
        return result
    if not passes:
        for index in range(len(batch)):
            event = batch.event(index)
            if event.timestamp is None and require_timestamp:
                problems[index] = (RejectReason.MISSING_TIMESTAMP, "timestamp: required")
            elif (problem := _check(event, window, now, skew)) is not None:
                problems[index] = problem
    seen: set[tuple[str, datetime]] = set()
    chosen: dict[str, datetime] = {}
    admitted, indices, rejected = result.events, result.indices, result.rejected
    columns = zip(
        batch.client_event_ids,
        batch.timestamps,
        batch.activity_types,
        batch.durations,
        batch.app_names,
        batch.urls,
        batch.screenshot_timestamps,
        batch.titles,
        strict=True,
    )
    for index, (given_id, given_stamp, kind, seconds, app, url, shot, title) in enumerate(columns):
        if problems and index in problems:
            rejected.append(EventOutcome(index, given_id, EventStatus.REJECTED, *problems[index]))
            continue
        stamp = now if given_stamp is None else given_stamp
        if given_id:
            client_id = given_id
        elif given_stamp is not None:
            client_id = _derived_id(window.session_id, stamp, kind, seconds, app, url, title)
        else:
            # Stamped by the server: two such events are two observations, never a retry.
            client_id = "server:" + uuid.uuid4().hex
        chose = bool(given_id)
        new = NewEvent(
            client_id,
            stamp,
            kind,
            seconds,
            app or None,
            url or None,
            shot,
            chose and given_stamp is None,
            chose,
            title or None,
        )
        key = new.key
        if key in seen:
            result.repeated.append(EventOutcome(index, client_id, EventStatus.DUPLICATE))
            continue
        if chose and chosen.setdefault(client_id, stamp) != stamp:
            reason = RejectReason.EVENT_ID_CONFLICT
            rejected.append(EventOutcome(index, client_id, EventStatus.REJECTED, reason, REFUSAL_MESSAGES[reason]))
            continue
        seen.add(key)
        admitted.append(new)
        indices.append(index)
    return result
