"""Activity routes: one event, or a batch from the desktop agent (the original's contract).

Request bodies use the original's camelCase (``activityType``, ``durationSeconds``, ...);
responses use snake_case. The shape of each event is checked here (400 naming the field,
e.g. ``events.3.durationSeconds``); the session window, ownership and de-duplication
are the ingest service's.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ConfigDict, Field, field_validator, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from gateway.errors import HTTPError
from gateway.openapi import documented
from gateway.rpc import call, parse_body, peers
from gateway.wire import Body, Instant, WholeNumber, path_id
from workpulse.ingest.v1 import ingest_pb2, ingest_pb2_grpc

MAX_BATCH_EVENTS = 1000
_TYPES = {"active": ingest_pb2.ACTIVITY_TYPE_ACTIVE, "idle": ingest_pb2.ACTIVITY_TYPE_IDLE}
_REASONS = {value: name.removeprefix("REJECT_REASON_").lower() for name, value in ingest_pb2.RejectReason.items()}


class EventBody(Body):
    # Lax, unlike other bodies: timestamps arrive as ISO 8601 strings.
    model_config = ConfigDict(strict=False, extra="forbid", allow_inf_nan=False, populate_by_name=True)

    activityType: Literal["active", "idle"] = Field(description="'active' or 'idle'")
    durationSeconds: WholeNumber = Field(ge=0, le=86_400, description="whole seconds, at most 24 h")
    appName: str | None = Field(None, max_length=255)
    url: str | None = Field(None, max_length=2048)
    timestamp: Instant | None = Field(None, description="ISO 8601; the server's clock when omitted")
    screenshot_timestamp: Instant | None = Field(None, alias="screenshot_timestamp")
    clientEventId: str | None = Field(
        None, min_length=1, max_length=128, description="your id of the event; a resend with it counts once"
    )
    title: str | None = Field(
        None, max_length=1024, description="the active window's title; dropped when your agent policy collects none"
    )

    def message(self) -> ingest_pb2.ActivityEvent:
        event = ingest_pb2.ActivityEvent(
            activity_type=_TYPES[self.activityType],
            duration_seconds=self.durationSeconds,
            app_name=self.appName or "",
            url=self.url or "",
            client_event_id=self.clientEventId or "",
            title=self.title or "",
        )
        if self.timestamp is not None:
            event.timestamp.CopyFrom(_stamp(self.timestamp))
        if self.screenshot_timestamp is not None:
            event.screenshot_timestamp.CopyFrom(_stamp(self.screenshot_timestamp))
        return event


class BatchBody(Body):
    model_config = ConfigDict(strict=False, extra="forbid")

    sessionId: str = Field(description="the session (yours) the events belong to")
    events: list[EventBody] | None = Field(None, description=f"1..{MAX_BATCH_EVENTS} events, each with a timestamp")
    activities: list[EventBody] | None = Field(None, description="alias of events")

    @field_validator("sessionId")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("must be a UUID") from None

    @model_validator(mode="after")
    def _one_list(self) -> BatchBody:
        if self.events is not None and self.activities is not None:
            raise ValueError("events, activities: ambiguous; send one of them")
        found = self.events if self.events is not None else self.activities
        if not found:
            raise ValueError("events: at least one event is required")
        if len(found) > MAX_BATCH_EVENTS:
            raise ValueError(f"events: at most {MAX_BATCH_EVENTS} events per batch")
        for index, event in enumerate(found):
            if event.timestamp is None:
                raise ValueError(f"events.{index}.timestamp: required in a batch")
        return self

    @property
    def items(self) -> list[EventBody]:
        return self.events if self.events is not None else self.activities or []


def _stamp(value: datetime) -> Timestamp:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def _ingest(request: Request) -> ingest_pb2_grpc.IngestServiceAsyncStub:
    stub: ingest_pb2_grpc.IngestServiceAsyncStub = peers(request).stub("ingest", ingest_pb2_grpc.IngestServiceStub)
    return stub


def _session_or_pending(
    reply: ingest_pb2.RecordActivityResponse | ingest_pb2.RecordActivityBatchResponse,
) -> dict[str, Any]:
    """The session's totals; or, when the events are stored but their totals are not
    applied yet (202 Accepted), ``session: null`` and ``totals_pending: true``."""
    if reply.totals_pending:
        return {"session": None, "totals_pending": True}
    return {"session": _totals(reply.session), "totals_pending": False}


def _totals(session: ingest_pb2.SessionTotals) -> dict[str, Any]:
    return {
        "id": session.session_id,
        "total_active_seconds": session.total_active_seconds,
        "total_idle_seconds": session.total_idle_seconds,
        "status": session.status,
        "version": session.version,
        "last_activity_at": (
            session.last_activity_at.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z")
            if session.HasField("last_activity_at")
            else None
        ),
    }


@documented(
    "Record one activity event in your session (201 with the session's totals, which include it)",
    body=EventBody,
    response="ActivityRecorded",
    status=201,
    responses={202: "ActivityRecorded"},
    errors=(400, 401, 404, 409, 413, 415, 429, 503),
)
async def record_activity(request: Request) -> JSONResponse:
    session_id = path_id(request, "session_id")
    body = await parse_body(request, EventBody)
    event = body.message()
    key = request.headers.get("idempotency-key")
    if key and not event.client_event_id:
        # The original's clients send neither an id nor a timestamp, so ingest stamps the
        # event and cannot tell a resend from a new one. A resend that runs again (its
        # first attempt's gateway died holding the key) carries this same id: a duplicate.
        event.client_event_id = "idempotency:" + hashlib.sha256(key.strip().encode()).hexdigest()[:40]
    reply = await call(
        request, _ingest(request).RecordActivity, ingest_pb2.RecordActivityRequest(session_id=session_id, event=event)
    )
    duplicate = reply.status == ingest_pb2.EVENT_STATUS_DUPLICATE
    return JSONResponse(
        {
            "message": "Activity already recorded" if duplicate else "Activity recorded",
            "clientEventId": reply.client_event_id,
            "duplicate": duplicate,
            **_session_or_pending(reply),
        },
        status_code=202 if reply.totals_pending else 201,
    )


@documented(
    f"Record a batch of up to {MAX_BATCH_EVENTS} events (alias 'activities'); resent events count once, "
    "events outside the session's time window are listed in 'rejected'",
    body=BatchBody,
    response="BatchRecorded",
    status=201,
    responses={202: "BatchRecorded"},
    errors=(400, 401, 404, 413, 415, 429, 503),
)
async def record_batch(request: Request) -> JSONResponse:
    body = await parse_body(request, BatchBody)
    reply = await call(
        request,
        _ingest(request).RecordActivityBatch,
        ingest_pb2.RecordActivityBatchRequest(
            session_id=body.sessionId, events=[event.message() for event in body.items]
        ),
    )
    rejected = [
        {"index": r.index, "clientEventId": r.client_event_id, "reason": _REASONS[r.reason], "message": r.message}
        for r in reply.results
        if r.status == ingest_pb2.EVENT_STATUS_REJECTED
    ]
    recorded = reply.accepted + reply.duplicate
    if recorded == 0 and rejected:
        first = rejected[0]
        raise HTTPError(400, f"events.{first['index']}.{first['message']}")
    return JSONResponse(
        {
            "message": "Activities recorded",
            "count": recorded,
            "accepted": reply.accepted,
            "duplicates": reply.duplicate,
            "rejected": rejected,
            **_session_or_pending(reply),
        },
        status_code=202 if reply.totals_pending else 201,
    )


routes: list[BaseRoute] = [
    Route("/sessions/{session_id}/activity", record_activity, methods=["POST"]),
    Route("/activity/batch", record_batch, methods=["POST"]),
]
