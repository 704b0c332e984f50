"""Work session routes: start, stop, the active sessions, one session, and history.

The sessions service owns every rule (one active session per user, versions, who sees
what); these handlers check the shape of the request and translate.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from gateway.errors import HTTPError
from gateway.openapi import documented
from gateway.rpc import call, parse_body, peers
from gateway.wire import Body, WholeNumber, iso, path_id, query_id
from workpulse.sessions.v1 import sessions_pb2, sessions_pb2_grpc


class StartBody(Body):
    project_id: str | None = Field(None, description="a project of your organization")


class StopBody(Body):
    version: WholeNumber | None = Field(None, ge=0, le=2**63 - 1, description="the version you saw; 409 if it changed")


def sessions_stub(request: Request) -> sessions_pb2_grpc.SessionsServiceAsyncStub:
    stub: sessions_pb2_grpc.SessionsServiceAsyncStub = peers(request).stub(
        "sessions", sessions_pb2_grpc.SessionsServiceStub
    )
    return stub


def session_json(session: sessions_pb2.Session) -> dict[str, Any]:
    """The original's session object, field for field."""
    return {
        "id": session.id,
        "user_id": session.user_id,
        "organization_id": session.organization_id,
        "project_id": session.project_id or None,
        "start_time": iso(session.start_time),
        "end_time": iso(session.end_time, session.HasField("end_time")),
        "status": session.status,
        "total_active_seconds": session.total_active_seconds,
        "total_idle_seconds": session.total_idle_seconds,
        "last_activity_at": iso(session.last_activity_at, session.HasField("last_activity_at")),
        "version": session.version,
    }


def _query_instant(request: Request, name: str) -> Timestamp | None:
    """An ISO 8601 instant or date (midnight UTC); naive times are UTC."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        instant = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise HTTPError(400, f"{name}: must be an ISO 8601 date or date-time") from None
    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp


def _query_size(request: Request) -> int:
    raw = request.query_params.get("page_size") or request.query_params.get("limit") or "0"
    if not (raw.isascii() and raw.isdigit()):
        raise HTTPError(400, "page_size: must be a whole number")
    return int(raw) if len(raw) <= 9 else 10**9


@documented(
    "Start a work session (one active session per user; 409 names the active one)",
    body=StartBody,
    response="WorkSession",
    status=201,
    errors=(400, 401, 404, 409, 413, 415, 429, 503),
)
async def start_session(request: Request) -> JSONResponse:
    body = await parse_body(request, StartBody)
    if body.project_id is not None:
        try:
            project_id = str(uuid.UUID(body.project_id))
        except ValueError:
            raise HTTPError(400, "project_id: must be a UUID") from None
    else:
        project_id = ""
    reply = await call(
        request, sessions_stub(request).StartSession, sessions_pb2.StartSessionRequest(project_id=project_id)
    )
    return JSONResponse(session_json(reply.session), status_code=201)


@documented(
    "Stop a session (owner, manager, admin); optional expected version",
    body=StopBody,
    response="WorkSession",
    errors=(400, 401, 404, 409, 413, 415, 429, 503),
)
async def stop_session(request: Request) -> JSONResponse:
    session_id = path_id(request, "session_id")
    body = await parse_body(request, StopBody)
    message = sessions_pb2.StopSessionRequest(session_id=session_id)
    if body.version is not None:
        message.expected_version = body.version
    reply = await call(request, sessions_stub(request).StopSession, message)
    return JSONResponse(session_json(reply.session))


@documented(
    "Active sessions: your own (employees) or your organization's (managers, admins)",
    response="WorkSession[]",
    errors=(401, 429, 503),
)
async def active_sessions(request: Request) -> JSONResponse:
    reply = await call(request, sessions_stub(request).ListActiveSessions, sessions_pb2.ListActiveSessionsRequest())
    return JSONResponse([session_json(s) for s in reply.sessions])


@documented("One session (employees: only their own)", response="WorkSession", errors=(400, 401, 404, 429, 503))
async def get_session(request: Request) -> JSONResponse:
    session_id = path_id(request, "session_id")
    reply = await call(
        request, sessions_stub(request).GetSession, sessions_pb2.GetSessionRequest(session_id=session_id)
    )
    return JSONResponse(session_json(reply.session))


@documented(
    "Session history, newest first: ?from=&to= (start time, ISO 8601, to exclusive), user_id, project_id, "
    "status, page_size (1..200, default 50), page_token (from the X-Next-Page-Token header)",
    response="WorkSession[]",
    query={
        "from": "instant: sessions started at or after (ISO 8601 date-time or date; naive is UTC)",
        "to": "instant: sessions started before (exclusive)",
        "user_id": "uuid: one user's sessions (employees: only their own)",
        "project_id": "uuid: one project's sessions",
        "status": "enum active|stopped: only sessions in this state",
        "page_size": "int 0..200: sessions per page; 50 when 0 or absent",
        "limit": "int 0..200: alias of page_size",
        "page_token": "string: the X-Next-Page-Token of the previous page",
    },
    headers={"X-Next-Page-Token": "page_token of the next page; absent on the last page"},
    errors=(400, 401, 403, 429, 503),
)
async def list_sessions(request: Request) -> JSONResponse:
    status = request.query_params.get("status", "")
    if status not in ("", "active", "stopped"):
        raise HTTPError(400, "status: must be 'active' or 'stopped'")
    message = sessions_pb2.ListSessionsRequest(
        user_id=query_id(request, "user_id"),
        project_id=query_id(request, "project_id"),
        started_from=_query_instant(request, "from"),
        started_before=_query_instant(request, "to"),
        status=status,
        page_size=_query_size(request),
        page_token=request.query_params.get("page_token", ""),
    )
    reply = await call(request, sessions_stub(request).ListSessions, message)
    headers = {"X-Next-Page-Token": reply.next_page_token} if reply.next_page_token else {}
    return JSONResponse([session_json(s) for s in reply.sessions], headers=headers)


routes: list[BaseRoute] = [
    Route("/sessions/start", start_session, methods=["POST"]),
    Route("/sessions/active", active_sessions, methods=["GET"]),
    Route("/sessions", list_sessions, methods=["GET"]),
    Route("/sessions/{session_id}/stop", stop_session, methods=["POST"]),
    Route("/sessions/{session_id}", get_session, methods=["GET"]),
]
