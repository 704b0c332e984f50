"""Translation between the generated protobuf messages and the domain."""

from __future__ import annotations

from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp

from services.ingest.domain import BatchOutcome, EventOutcome, EventStatus, IncomingEvent, RejectReason, SessionTotals
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


def incoming_event(message: pb.ActivityEvent) -> IncomingEvent:
    return IncomingEvent(
        activity_type=_TYPES.get(message.activity_type, ""),
        duration_seconds=message.duration_seconds,
        app_name=message.app_name,
        url=message.url,
        timestamp=message.timestamp.ToDatetime(tzinfo=UTC) if message.HasField("timestamp") else None,
        screenshot_timestamp=(
            message.screenshot_timestamp.ToDatetime(tzinfo=UTC) if message.HasField("screenshot_timestamp") else None
        ),
        client_event_id=message.client_event_id,
    )


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


def batch_response(outcome: BatchOutcome) -> pb.RecordActivityBatchResponse:
    return pb.RecordActivityBatchResponse(
        accepted=outcome.count(EventStatus.ACCEPTED),
        duplicate=outcome.count(EventStatus.DUPLICATE),
        rejected=outcome.count(EventStatus.REJECTED),
        results=[result_message(o) for o in outcome.not_accepted],
        session=totals_message(outcome.session),
        totals_pending=outcome.totals_pending,
    )


def batch_ack(batch_id: str, outcome: BatchOutcome) -> pb.StreamActivityResponse:
    body = batch_response(outcome)
    return pb.StreamActivityResponse(
        batch_id=batch_id,
        accepted=body.accepted,
        duplicate=body.duplicate,
        rejected=body.rejected,
        results=body.results,
        session=body.session,
        totals_pending=body.totals_pending,
    )
