"""Translation between the generated protobuf messages and the domain."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from services.ingest.domain import (
    BatchOutcome,
    EventOutcome,
    EventStatus,
    IncomingBatch,
    IncomingEvent,
    RejectReason,
    SessionTotals,
)
from workpulse.ingest.v1 import ingest_pb2 as pb

_TYPES = {pb.ACTIVITY_TYPE_ACTIVE: "active", pb.ACTIVITY_TYPE_IDLE: "idle"}
_STATUS = {
    EventStatus.ACCEPTED: pb.EVENT_STATUS_ACCEPTED,
    EventStatus.DUPLICATE: pb.EVENT_STATUS_DUPLICATE,
    EventStatus.REJECTED: pb.EVENT_STATUS_REJECTED,
}
_REASON = {
    RejectReason.INVALID_DURATION: pb.REJECT_REASON_INVALID_DURATION,
    RejectReason.UNKNOWN_ACTIVITY_TYPE: pb.REJECT_REASON_UNKNOWN_ACTIVITY_TYPE,
    RejectReason.MISSING_TIMESTAMP: pb.REJECT_REASON_MISSING_TIMESTAMP,
    RejectReason.TIMESTAMP_IN_FUTURE: pb.REJECT_REASON_TIMESTAMP_IN_FUTURE,
    RejectReason.BEFORE_SESSION_START: pb.REJECT_REASON_BEFORE_SESSION_START,
    RejectReason.AFTER_SESSION_END: pb.REJECT_REASON_AFTER_SESSION_END,
    RejectReason.EVENT_ID_CONFLICT: pb.REJECT_REASON_EVENT_ID_CONFLICT,
    RejectReason.FIELD_TOO_LONG: pb.REJECT_REASON_FIELD_TOO_LONG,
    RejectReason.INVALID_TEXT: pb.REJECT_REASON_INVALID_TEXT,
}


# Timestamps are converted by arithmetic on seconds and nanos: Timestamp.ToDatetime is
# Python code that builds the same value three times as slowly, once per event. Its range
# check is kept: an invalid timestamp still goes to ToDatetime, which raises as before.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_MIN = -62_135_596_800  # 0001-01-01, the first second a Timestamp may hold
_SECONDS_MAX = 253_402_300_799  # 9999-12-31 23:59:59


def _datetime(stamp: Timestamp) -> datetime:
    seconds, nanos = stamp.seconds, stamp.nanos
    if 0 <= nanos < 1_000_000_000 and _SECONDS_MIN <= seconds <= _SECONDS_MAX:
        return _EPOCH + timedelta(0, seconds, nanos // 1000)
    return stamp.ToDatetime(tzinfo=UTC)  # raises ValueError


def incoming_event(message: pb.ActivityEvent) -> IncomingEvent:
    return IncomingEvent(
        activity_type=_TYPES.get(message.activity_type, ""),
        duration_seconds=message.duration_seconds,
        app_name=message.app_name,
        url=message.url,
        timestamp=_datetime(message.timestamp) if message.HasField("timestamp") else None,
        screenshot_timestamp=(
            _datetime(message.screenshot_timestamp) if message.HasField("screenshot_timestamp") else None
        ),
        client_event_id=message.client_event_id,
        title=message.title,
    )


def incoming_batch(messages: Iterable[pb.ActivityEvent]) -> IncomingBatch:
    """A batch's events as columns (see IncomingBatch), read in one pass: every field read
    of a protobuf message costs about a tenth of a microsecond, so each is read once."""
    types: list[str] = []
    durations: list[int] = []
    apps: list[str] = []
    urls: list[str] = []
    stamps: list[datetime | None] = []
    shots: list[datetime | None] = []
    ids: list[str] = []
    titles: list[str] = []
    kind_of = _TYPES.get
    for m in messages:
        types.append(kind_of(m.activity_type, ""))
        durations.append(m.duration_seconds)
        apps.append(m.app_name)
        urls.append(m.url)
        ids.append(m.client_event_id)
        titles.append(m.title)
        stamp = m.timestamp
        seconds, nanos = stamp.seconds, stamp.nanos
        if (seconds or nanos) and 0 <= nanos < 1_000_000_000 and _SECONDS_MIN <= seconds <= _SECONDS_MAX:
            # Set (an unset Timestamp reads as 0, 0) and valid: the common case, inline.
            stamps.append(_EPOCH + timedelta(0, seconds, nanos // 1000))
        else:
            stamps.append(_datetime(stamp) if m.HasField("timestamp") else None)
        shots.append(_datetime(m.screenshot_timestamp) if m.HasField("screenshot_timestamp") else None)
    return IncomingBatch(types, durations, apps, urls, stamps, shots, ids, titles)


def totals_message(totals: SessionTotals | None) -> pb.SessionTotals | None:
    if totals is None:
        return None
    message = pb.SessionTotals(
        session_id=totals.session_id,
        total_active_seconds=totals.total_active_seconds,
        total_idle_seconds=totals.total_idle_seconds,
        version=totals.version,
        status=totals.status,
    )
    if totals.last_activity_at is not None:
        stamp = Timestamp()
        stamp.FromDatetime(totals.last_activity_at.astimezone(UTC))
        message.last_activity_at.CopyFrom(stamp)
    return message


def result_message(outcome: EventOutcome) -> pb.EventResult:
    return pb.EventResult(
        index=outcome.index,
        client_event_id=outcome.client_event_id,
        status=_STATUS[outcome.status],
        reason=_REASON[outcome.reason] if outcome.reason else pb.REJECT_REASON_UNSPECIFIED,
        message=outcome.message,
    )


def _outcome_fields(outcome: BatchOutcome) -> dict[str, Any]:
    """The fields a batch's answer has, by RPC or by stream."""
    return {
        "accepted": outcome.count(EventStatus.ACCEPTED),
        "duplicate": outcome.count(EventStatus.DUPLICATE),
        "rejected": outcome.count(EventStatus.REJECTED),
        "results": [result_message(o) for o in outcome.not_accepted],
        "session": totals_message(outcome.session),
        "totals_pending": outcome.totals_pending,
    }


def batch_response(outcome: BatchOutcome) -> pb.RecordActivityBatchResponse:
    return pb.RecordActivityBatchResponse(**_outcome_fields(outcome))


def batch_ack(batch_id: str, outcome: BatchOutcome) -> pb.StreamActivityResponse:
    return pb.StreamActivityResponse(
        batch_id=batch_id, policy_version=outcome.policy_version, **_outcome_fields(outcome)
    )
