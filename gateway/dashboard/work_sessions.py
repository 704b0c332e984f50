"""The Sessions page's fragments: the active sessions, the history with filters, start and
stop. Through the RPCs of ``/sessions``; the sessions service decides who sees and stops
what (an employee: only their own)."""

from __future__ import annotations

import asyncio
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.dashboard import reads
from gateway.dashboard.fragments import form_fields, guarded, query_date
from gateway.dashboard.templating import Renderer
from gateway.errors import HTTPError
from gateway.routes.sessions import sessions_stub
from gateway.rpc import call
from gateway.wire import path_id, query_id
from workpulse.sessions.v1 import sessions_pb2

CHANGED = {"HX-Trigger": "wp:sessions-changed"}  # the page reloads its lists on it


def _optional_uuid(raw: str, name: str) -> str:
    if not raw:
        return ""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise HTTPError(400, f"{name}: must be a UUID") from None


async def _names(request: Request) -> tuple[dict[str, str], dict[str, str]]:
    members, projects = await asyncio.gather(reads.members(request), reads.project_names(request))
    return {m.id: m.name for m in members}, projects


def routes(renderer: Renderer) -> list[BaseRoute]:
    async def filters(request: Request) -> Response:
        members, projects = await asyncio.gather(reads.members(request), reads.project_names(request))
        return renderer.render(request, "sessions/_filters.html", members=members, projects=projects)

    async def projects(request: Request) -> Response:
        found = await reads.project_names(request)
        return renderer.render(request, "sessions/_projects.html", projects=found)

    async def active(request: Request) -> Response:
        reply, (people, projects) = await asyncio.gather(
            call(request, sessions_stub(request).ListActiveSessions, sessions_pb2.ListActiveSessionsRequest()),
            _names(request),
        )
        return renderer.render(
            request, "sessions/_active.html", sessions=list(reply.sessions), people=people, projects=projects
        )

    async def history(request: Request) -> Response:
        message = sessions_pb2.ListSessionsRequest(
            user_id=query_id(request, "user_id"),
            project_id=query_id(request, "project_id"),
            started_from=query_date(request, "from"),
            started_before=query_date(request, "to", next_day=True),
            page_size=50,
            page_token=request.query_params.get("page_token", ""),
        )
        reply, (people, projects) = await asyncio.gather(
            call(request, sessions_stub(request).ListSessions, message), _names(request)
        )
        template = "sessions/_more.html" if message.page_token else "sessions/_history.html"
        query = {k: v for k, v in request.query_params.items() if k != "page_token"}
        return renderer.render(
            request,
            template,
            sessions=list(reply.sessions),
            people=people,
            projects=projects,
            next_page_token=reply.next_page_token,
            query=query,
        )

    async def start(request: Request) -> Response:
        fields = await form_fields(request)
        project_id = _optional_uuid(fields.get("project_id", ""), "project_id")
        message = sessions_pb2.StartSessionRequest(project_id=project_id)
        reply = await call(request, sessions_stub(request).StartSession, message)
        response = renderer.render(request, "sessions/_started.html", session=reply.session)
        response.headers.update(CHANGED)
        return response

    async def stop(request: Request) -> Response:
        message = sessions_pb2.StopSessionRequest(session_id=path_id(request, "session_id"))
        raw = request.query_params.get("version", "")
        if raw.isdigit():
            message.expected_version = int(raw)
        reply, (people, projects) = await asyncio.gather(
            call(request, sessions_stub(request).StopSession, message), _names(request)
        )
        response = renderer.render(
            request, "sessions/_row.html", session=reply.session, people=people, projects=projects
        )
        response.headers.update(CHANGED)
        return response

    return [
        Route("/ui/sessions/filters", guarded(renderer, filters), methods=["GET"]),
        Route("/ui/sessions/projects", guarded(renderer, projects), methods=["GET"]),
        Route("/ui/sessions/active", guarded(renderer, active), methods=["GET"]),
        Route("/ui/sessions/history", guarded(renderer, history), methods=["GET"]),
        Route("/ui/sessions/start", guarded(renderer, start), methods=["POST"]),
        Route("/ui/sessions/{session_id}/stop", guarded(renderer, stop), methods=["POST"]),
    ]
