"""The Live page: every member with their presence, current session and today's total.

``GET /ui/live/members`` renders the whole table, ``GET /ui/live/members/{user_id}`` one
row (the page's module refetches it on that member's events).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.dashboard import reads
from gateway.dashboard.fragments import guarded
from gateway.dashboard.templating import Renderer
from gateway.routes.auth import ROLE_NAME
from gateway.wire import path_id
from workpulse.auth.v1 import auth_pb2
from workpulse.realtime.v1 import realtime_pb2
from workpulse.sessions.v1 import sessions_pb2

ACTIVITY = {
    realtime_pb2.ACTIVITY_ACTIVE: "active",
    realtime_pb2.ACTIVITY_IDLE: "idle",
    realtime_pb2.ACTIVITY_AGENT_SILENT: "agent_silent",
}
STATE_LABELS = {
    "active": "Active",
    "idle": "Idle",
    "agent_silent": "Agent silent",
    "online": "Online",
    "offline": "Offline",
}


@dataclass(frozen=True)
class MemberRow:
    user: auth_pb2.User
    role: str
    state: str
    session: sessions_pb2.Session | None
    project: str
    today_seconds: int
    last_activity: str  # ISO 8601 or ""

    @property
    def state_label(self) -> str:
        return STATE_LABELS[self.state]


def state_of(found: realtime_pb2.UserPresence | None) -> str:
    if found is None:
        return "offline"
    return ACTIVITY.get(found.activity, "online")


def row_of(
    member: auth_pb2.User,
    presence: realtime_pb2.UserPresence | None,
    session: sessions_pb2.Session | None,
    projects: dict[str, str],
    today: int,
) -> MemberRow:
    last = ""
    if session is not None and session.HasField("last_activity_at"):
        last = session.last_activity_at.ToDatetime().isoformat() + "Z"
    elif presence is not None and presence.HasField("last_activity_at"):
        last = presence.last_activity_at.ToDatetime().isoformat() + "Z"
    project = projects.get(session.project_id, "") if session is not None and session.project_id else ""
    return MemberRow(member, ROLE_NAME.get(member.role, ""), state_of(presence), session, project, today, last)


def routes(renderer: Renderer) -> list[BaseRoute]:
    async def table(request: Request) -> Response:
        caller, found, online, active, projects = await asyncio.gather(
            reads.me(request),
            reads.members(request),
            reads.presence(request),
            reads.active_sessions(request),
            reads.project_names(request),
        )
        today = await reads.today_by_member(request, found)
        rows = [row_of(m, online.get(m.id), active.get(m.id), projects, today[m.id]) for m in found]
        rows.sort(key=lambda r: (r.state == "offline", r.user.name.lower()))
        own_only = ROLE_NAME.get(caller.role) == "employee"
        return renderer.render(request, "live/_table.html", rows=rows, own_only=own_only)

    async def row(request: Request) -> Response:
        user_id = path_id(request, "user_id")
        member = await reads.user(request, user_id)
        online, active, projects, today = await asyncio.gather(
            reads.presence(request),
            reads.active_sessions(request),
            reads.project_names(request),
            reads.today_seconds(request, member),
        )
        found = row_of(member, online.get(user_id), active.get(user_id), projects, today)
        return renderer.render(request, "live/_row.html", row=found)

    return [
        Route("/ui/live/members", guarded(renderer, table), methods=["GET"]),
        Route("/ui/live/members/{user_id}", guarded(renderer, row), methods=["GET"]),
    ]
