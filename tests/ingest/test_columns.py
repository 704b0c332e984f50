"""A batch read as columns decides exactly as event by event: the protobuf conversion, the
admission's batch-wide shortcut, the clock's correction and the outcome's counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.ingest.admission import admit
from services.ingest.domain import (
    STREAM_CLOCK_ALLOWANCE,
    AgentClock,
    BatchOutcome,
    EventOutcome,
    EventStatus,
    IncomingBatch,
    IncomingEvent,
    RejectReason,
    SessionWindow,
)
from services.ingest.messages import incoming_batch, incoming_event
from workpulse.ingest.v1 import ingest_pb2 as pb

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=2)
WINDOW = SessionWindow("org", "sess", "user", NOW - timedelta(hours=1), None)


def _message(**fields: object) -> pb.ActivityEvent:
    stamp = fields.pop("stamp", None)
    shot = fields.pop("shot", None)
    message = pb.ActivityEvent(**fields)  # type: ignore[arg-type]
    if stamp is not None:
        message.timestamp.seconds, message.timestamp.nanos = stamp  # type: ignore[misc]
    if shot is not None:
        message.screenshot_timestamp.FromDatetime(shot)  # type: ignore[arg-type]
    return message


def test_a_batch_converts_as_each_of_its_events_does() -> None:
    messages = [
        _message(activity_type=pb.ACTIVITY_TYPE_ACTIVE, duration_seconds=5, app_name="a", stamp=(1_764_000_000, 999)),
        _message(activity_type=pb.ACTIVITY_TYPE_IDLE, url="u", client_event_id="c", stamp=(1_764_000_001, 999_999_999)),
        _message(activity_type=pb.ACTIVITY_TYPE_ACTIVE, stamp=(0, 0)),  # set to the epoch: not "unset"
        _message(activity_type=pb.ACTIVITY_TYPE_ACTIVE),  # no timestamp
        _message(activity_type=99, stamp=(-62_135_596_800, 0), shot=NOW),  # the earliest second; unknown type
    ]
    batch = incoming_batch(messages)
    assert [batch.event(i) for i in range(len(messages))] == [incoming_event(m) for m in messages]
    assert batch.timestamps[1] == datetime.fromtimestamp(1_764_000_001, UTC).replace(microsecond=999_999)
    assert batch.timestamps[2] == datetime(1970, 1, 1, tzinfo=UTC) and batch.timestamps[3] is None
    assert batch.screenshot_timestamps == [None, None, None, None, NOW]


@pytest.mark.parametrize("stamp", [(1, -1), (1, 1_000_000_000), (253_402_300_800, 0)])
def test_an_invalid_timestamp_fails_as_the_protobuf_conversion_does(stamp: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        incoming_batch([_message(activity_type=pb.ACTIVITY_TYPE_ACTIVE, stamp=stamp)])


def _valid(n: int) -> list[IncomingEvent]:
    return [
        IncomingEvent(
            "active" if i % 3 else "idle", i, "" if i % 2 else "app", "", NOW - timedelta(seconds=i), None, f"e{i}"
        )
        for i in range(n)
    ]


def test_a_valid_batch_of_distinct_ids_is_admitted_whole_as_one_by_one() -> None:
    events = _valid(50)
    whole = admit(IncomingBatch.of(events), WINDOW, now=NOW, skew=SKEW, require_timestamp=True)
    # One control character sends the batch down the event-by-event path: only that
    # event is refused, and every other is admitted as the whole batch admitted it.
    bad = IncomingEvent("active", 1, "ok", "https://x/\x07", NOW, None, "bad")
    one_by_one = admit([*events, bad], WINDOW, now=NOW, skew=SKEW, require_timestamp=True)
    assert whole.admitted == one_by_one.admitted
    assert [(o.index, o.reason, o.message) for o in one_by_one.rejected] == [
        (50, RejectReason.INVALID_TEXT, "url: must not contain control characters")
    ]
    assert whole.admitted[1][1].app_name is None and whole.admitted[0][1].app_name == "app"
    assert all(e.client_chose_id and not e.match_any_timestamp for e in whole.events)


def test_a_batch_repeating_an_id_gets_a_duplicate_and_a_conflict() -> None:
    events = _valid(3)
    again, restamped = events[1], IncomingEvent("active", 1, timestamp=NOW, client_event_id="e2")
    result = admit([*events, again, restamped], WINDOW, now=NOW, skew=SKEW, require_timestamp=True)
    assert result.indices == [0, 1, 2]
    assert [(o.index, o.status) for o in result.repeated] == [(3, EventStatus.DUPLICATE)]
    assert [(o.index, o.reason) for o in result.rejected] == [(4, RejectReason.EVENT_ID_CONFLICT)]


@pytest.mark.parametrize(
    "event",
    [
        IncomingEvent("active", 1, timestamp=NOW + SKEW + timedelta(microseconds=1), client_event_id="x"),
        IncomingEvent("active", 1, timestamp=WINDOW.start_time - SKEW - timedelta(microseconds=1), client_event_id="x"),
        IncomingEvent("active", 86_401, timestamp=NOW, client_event_id="x"),
        IncomingEvent("active", 1, app_name="a" * 256, timestamp=NOW, client_event_id="x"),
        IncomingEvent("active", 1, timestamp=NOW, client_event_id="x" * 129),
        IncomingEvent("active", 1, timestamp=NOW, client_event_id="x\x00"),
        IncomingEvent("typing", 1, timestamp=NOW, client_event_id="x"),
    ],
)
def test_one_bad_event_in_a_batch_is_refused_alone(event: IncomingEvent) -> None:
    result = admit([*_valid(5), event], WINDOW, now=NOW, skew=SKEW, require_timestamp=True)
    assert result.indices == [0, 1, 2, 3, 4] and [o.index for o in result.rejected] == [5]


def test_a_batch_is_corrected_as_each_event_is() -> None:
    clock = AgentClock()
    clock.observe(NOW - timedelta(minutes=3), NOW)
    events = [*_valid(3), IncomingEvent("active", 1)]
    shifted = IncomingBatch.of(events).shifted(clock.correction)
    assert [shifted.event(i) for i in range(4)] == [clock.corrected(e) for e in events]
    assert IncomingBatch.of(events).shifted(timedelta(0)).timestamps == [e.timestamp for e in events]
    assert clock.correction > STREAM_CLOCK_ALLOWANCE


def test_an_outcome_counts_the_accepted_without_an_object_each() -> None:
    events = admit(_valid(4), WINDOW, now=NOW, skew=SKEW, require_timestamp=True)
    duplicate = EventOutcome(2, "e2", EventStatus.DUPLICATE)
    rejected = EventOutcome(4, "", EventStatus.REJECTED, RejectReason.MISSING_TIMESTAMP, "timestamp: required")
    outcome = BatchOutcome(5, [duplicate, rejected], events.events, events.indices)
    counts = [outcome.count(s) for s in (EventStatus.ACCEPTED, EventStatus.DUPLICATE, EventStatus.REJECTED)]
    assert counts == [3, 1, 1]
    assert [(o.index, o.client_event_id, o.status) for o in outcome.outcomes] == [
        (0, "e0", EventStatus.ACCEPTED),
        (1, "e1", EventStatus.ACCEPTED),
        (2, "e2", EventStatus.DUPLICATE),
        (3, "e3", EventStatus.ACCEPTED),
        (4, "", EventStatus.REJECTED),
    ]
