"""The Live page: every member with their presence, current session and today so far.

``GET /ui/live/members`` renders the whole table; ``GET /ui/live/rows?ids=a,b`` the named
members' rows (the page's module asks for the members its events named, one request in
flight, the rest batched behind it, and puts each row in place); ``GET /ui/live/members/{id}``
one row. Every figure is a service's: presence from realtime, sessions from sessions,
today's totals computed live by the scheduler.
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
from gateway.errors import HTTPError
from gateway.routes.auth import ROLE_NAME
from gateway.wire import path_id, uuid_field
from workpulse.auth.v1 import auth_pb2
from workpulse.realtime.v1 import realtime_pb2
from workpulse.scheduler.v1 import scheduler_pb2
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
MAX_ROWS = 100  # per batched refresh; the module asks for fewer


@dataclass(frozen=True)
class MemberRow:
    user: auth_pb2.User
    role: str
    state: str
    session: sessions_pb2.Session | None
    project: str
    today: scheduler_pb2.DailySummary
    last_activity: str  # ISO 8601 or ""
    app: str  # "" when unknown or the organization's policy does not share it

    @property
    def state_label(self) -> str:
        return STATE_LABELS[self.state]

    @property
    def today_seconds(self) -> int:
        """Recorded time today: what the member's agent reported, active or idle."""
        return self.today.active_seconds + self.today.idle_seconds


def state_of(found: realtime_pb2.UserPresence | None) -> str:
    if found is None:
        return "offline"
    return ACTIVITY.get(found.activity, "online")


def row_of(
    member: auth_pb2.User,
    presence: realtime_pb2.UserPresence | None,
    session: sessions_pb2.Session | None,
    projects: dict[str, str],
    today: scheduler_pb2.DailySummary | None,
) -> MemberRow:
    last = ""
    if session is not None and session.HasField("last_activity_at"):
        last = session.last_activity_at.ToDatetime().isoformat() + "Z"
    elif presence is not None and presence.HasField("last_activity_at"):
        last = presence.last_activity_at.ToDatetime().isoformat() + "Z"
    project = projects.get(session.project_id, "") if session is not None and session.project_id else ""
    role = ROLE_NAME.get(member.role, "")
    found = today or scheduler_pb2.DailySummary(user_id=member.id)
    app = presence.current_app if presence is not None and session is not None else ""
    return MemberRow(member, role, state_of(presence), session, project, found, last, app)


async def rows_of(request: Request, found: list[auth_pb2.User], *, few: bool = False) -> list[MemberRow]:
    """The members' rows, from one read of each service (whatever their number); ``few``
    rows read only their members' presence."""
    online, active, projects, today = await asyncio.gather(
        reads.presence(request, [m.id for m in found] if few else None),
        reads.active_sessions(request),
        reads.project_names(request),
        reads.today(request, [m.id for m in found]),
    )
    return [row_of(m, online.get(m.id), active.get(m.id), projects, today.get(m.id)) for m in found]


def named_ids(request: Request) -> list[str]:
    raw = [part for part in request.query_params.get("ids", "").split(",") if part]
    if not raw or len(raw) > MAX_ROWS:
        raise HTTPError(400, f"ids: between 1 and {MAX_ROWS} comma-separated user ids")
    return list(dict.fromkeys(uuid_field(part, "ids") for part in raw))


def routes(renderer: Renderer) -> list[BaseRoute]:
    async def table(request: Request) -> Response:
        caller, found = await asyncio.gather(reads.me(request), reads.members(request))
        rows = await rows_of(request, found)
        rows.sort(key=lambda r: (r.state == "offline", r.user.name.lower()))
        own_only = ROLE_NAME.get(caller.role) == "employee"
        return renderer.render(request, "live/_table.html", rows=rows, own_only=own_only)

    async def batch(request: Request) -> Response:
        rows = await rows_of(request, await reads.named(request, named_ids(request)), few=True)
        return renderer.render(request, "live/_rows.html", rows=rows)

    async def row(request: Request) -> Response:
        member = await reads.user(request, path_id(request, "user_id"))
        [found] = await rows_of(request, [member], few=True)
        return renderer.render(request, "live/_row.html", row=found)

    return [
        Route("/ui/live/members", guarded(renderer, table), methods=["GET"]),
        Route("/ui/live/rows", guarded(renderer, batch), methods=["GET"]),
        Route("/ui/live/members/{user_id}", guarded(renderer, row), methods=["GET"]),
    ]
