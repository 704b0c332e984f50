"""The admission rules of events, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.ingest.admission import admit, derive_client_event_id
from services.ingest.domain import (
    AgentClock,
    EventStatus,
    IncomingEvent,
    NewEvent,
    RejectReason,
    SessionWindow,
    totals_delta,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=2)


def window(end: datetime | None = None) -> SessionWindow:
    return SessionWindow("org", "sess", "user", NOW - timedelta(hours=1), end)


def reasons(events: list[IncomingEvent], w: SessionWindow | None = None) -> list[RejectReason | None]:
    result = admit(events, w or window(), now=NOW, skew=SKEW, require_timestamp=True)
    found: dict[int, RejectReason | None] = {i: None for i, _ in result.admitted}
    found.update({o.index: o.reason for o in result.rejected})
    return [found[i] for i in range(len(events))]


def test_each_bad_event_gets_its_own_reason() -> None:
    ok = NOW - timedelta(minutes=1)
    events = [
        IncomingEvent("active", 60, timestamp=ok),
        IncomingEvent("active", -1, timestamp=ok),
        IncomingEvent("active", 86_401, timestamp=ok),
        IncomingEvent("typing", 60, timestamp=ok),
        IncomingEvent("active", 60),
        IncomingEvent("idle", 60, timestamp=NOW + SKEW + timedelta(seconds=1)),
        IncomingEvent("idle", 60, timestamp=NOW - timedelta(hours=1) - SKEW - timedelta(seconds=1)),
        IncomingEvent("idle", 60, app_name="x" * 256, timestamp=ok),
        IncomingEvent("idle", 86_400, timestamp=NOW + SKEW),
    ]
    assert reasons(events) == [
        None,
        RejectReason.INVALID_DURATION,
        RejectReason.INVALID_DURATION,
        RejectReason.UNKNOWN_ACTIVITY_TYPE,
        RejectReason.MISSING_TIMESTAMP,
        RejectReason.TIMESTAMP_IN_FUTURE,
        RejectReason.BEFORE_SESSION_START,
        RejectReason.FIELD_TOO_LONG,
        None,
    ]


def test_a_stopped_window_admits_nothing_stamped_after_the_stop_not_even_within_the_skew() -> None:
    end = NOW - timedelta(minutes=30)
    w = window(end=end)
    events = [
        IncomingEvent("active", 60, timestamp=end - timedelta(minutes=5)),
        IncomingEvent("active", 60, timestamp=end),
        IncomingEvent("active", 60, timestamp=end + timedelta(microseconds=1)),
        IncomingEvent("active", 60, timestamp=end + SKEW),
    ]
    assert reasons(events, w) == [None, None, RejectReason.AFTER_SESSION_END, RejectReason.AFTER_SESSION_END]


def test_one_client_event_id_with_two_timestamps_in_one_request_is_a_conflict() -> None:
    stamp = NOW - timedelta(minutes=1)
    first = IncomingEvent("active", 60, timestamp=stamp, client_event_id="e-1")
    restamped = IncomingEvent("active", 60, timestamp=stamp + timedelta(seconds=1), client_event_id="e-1")
    assert reasons([first, restamped]) == [None, RejectReason.EVENT_ID_CONFLICT]


def test_an_agent_clock_is_corrected_by_its_smallest_measured_offset_in_whole_seconds() -> None:
    clock = AgentClock()
    sent = NOW - timedelta(minutes=10)  # the agent's clock runs ten minutes behind
    clock.observe(sent, NOW + timedelta(milliseconds=40))
    clock.observe(sent + timedelta(seconds=1), NOW + timedelta(seconds=1, milliseconds=15))
    clock.observe(sent + timedelta(seconds=2), NOW + timedelta(seconds=2, milliseconds=300))  # a slow trip
    assert clock.offset == timedelta(minutes=10, milliseconds=15)
    event = IncomingEvent("active", 5, timestamp=sent)
    assert clock.corrected(event).timestamp == sent + timedelta(minutes=10)
    assert clock.corrected(IncomingEvent("active", 5)).timestamp is None  # the server stamps those


def test_a_synchronised_agent_clock_is_left_as_it_is() -> None:
    clock = AgentClock()
    clock.observe(NOW, NOW + timedelta(milliseconds=900))
    event = IncomingEvent("active", 5, timestamp=NOW)
    assert clock.correction == timedelta(0) and clock.corrected(event) is event
    assert AgentClock().corrected(event) is event  # nothing measured yet


def test_ids_derived_from_content_recognise_a_blind_retry() -> None:
    stamp = NOW - timedelta(minutes=1)
    a = IncomingEvent("active", 60, app_name="editor", timestamp=stamp)
    assert derive_client_event_id("sess", a, stamp) == derive_client_event_id("sess", a, stamp)
    b = IncomingEvent("active", 61, app_name="editor", timestamp=stamp)
    assert derive_client_event_id("sess", a, stamp) != derive_client_event_id("sess", b, stamp)
    result = admit([a, a], window(), now=NOW, skew=SKEW, require_timestamp=True)
    assert [o.status for o in result.repeated] == [EventStatus.DUPLICATE]


def test_server_stamped_events_without_ids_are_never_duplicates_of_each_other() -> None:
    e = IncomingEvent("active", 60)
    result = admit([e, e], window(), now=NOW, skew=SKEW, require_timestamp=False)
    assert len(result.admitted) == 2
    assert result.admitted[0][1].client_event_id != result.admitted[1][1].client_event_id


def test_delta_sums_active_and_idle_separately() -> None:
    def new(kind: str, seconds: int, minute: int) -> NewEvent:
        return NewEvent(f"e{minute}", NOW - timedelta(minutes=minute), kind, seconds, None, None, None)

    delta = totals_delta(window(), [new("active", 60, 3), new("idle", 30, 2), new("active", 5, 9)])
    assert delta is not None
    assert (delta.active_seconds, delta.idle_seconds, delta.event_count) == (65, 30, 3)
    assert delta.last_activity_at == NOW - timedelta(minutes=2)
    assert totals_delta(window(), []) is None
