"""What the dashboard reads from the services, through the RPCs the REST routes use and
with the caller's own token (``gateway.rpc.call``): the services scope every answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf.timestamp_pb2 import Timestamp
from starlette.requests import Request

from gateway.routes.sessions import sessions_stub
from gateway.rpc import call, peers
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc
from workpulse.realtime.v1 import realtime_pb2, realtime_pb2_grpc
from workpulse.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from workpulse.sessions.v1 import sessions_pb2

PAGE = 200


def auth(request: Request) -> auth_pb2_grpc.AuthServiceAsyncStub:
    stub: auth_pb2_grpc.AuthServiceAsyncStub = peers(request).stub("auth", auth_pb2_grpc.AuthServiceStub)
    return stub


def realtime(request: Request) -> realtime_pb2_grpc.RealtimeServiceAsyncStub:
    stub: realtime_pb2_grpc.RealtimeServiceAsyncStub = peers(request).stub(
        "realtime", realtime_pb2_grpc.RealtimeServiceStub
    )
    return stub


def scheduler(request: Request) -> scheduler_pb2_grpc.SchedulerServiceAsyncStub:
    stub: scheduler_pb2_grpc.SchedulerServiceAsyncStub = peers(request).stub(
        "scheduler", scheduler_pb2_grpc.SchedulerServiceStub
    )
    return stub


async def me(request: Request) -> auth_pb2.User:
    return (await call(request, auth(request).GetUser, auth_pb2.GetUserRequest())).user


async def user(request: Request, user_id: str) -> auth_pb2.User:
    return (await call(request, auth(request).GetUser, auth_pb2.GetUserRequest(user_id=user_id))).user


async def members(request: Request) -> list[auth_pb2.User]:
    """Every user the caller may see (an employee: themselves), all pages."""
    found: list[auth_pb2.User] = []
    token = ""
    while True:
        message = auth_pb2.ListUsersRequest(page_size=PAGE, page_token=token)
        reply = await call(request, auth(request).ListUsers, message)
        found.extend(reply.users)
        token = reply.next_page_token
        if not token:
            return found


async def presence(request: Request) -> dict[str, realtime_pb2.UserPresence]:
    reply = await call(request, realtime(request).GetPresence, realtime_pb2.GetPresenceRequest())
    return {p.user_id: p for p in reply.users}


async def active_sessions(request: Request) -> dict[str, sessions_pb2.Session]:
    reply = await call(request, sessions_stub(request).ListActiveSessions, sessions_pb2.ListActiveSessionsRequest())
    return {s.user_id: s for s in reply.sessions}


async def project_names(request: Request) -> dict[str, str]:
    reply = await call(request, sessions_stub(request).ListProjects, sessions_pb2.ListProjectsRequest())
    return {p.id: p.name for p in reply.projects}


def local_midnight(zone: str, now: datetime | None = None) -> Timestamp:
    """The start of today in ``zone`` (UTC when unknown), as a Timestamp."""
    try:
        tz = ZoneInfo(zone) if zone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        tz = UTC
    local = (now or datetime.now(UTC)).astimezone(tz)
    stamp = Timestamp()
    stamp.FromDatetime(local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC))
    return stamp


async def today_seconds(request: Request, member: auth_pb2.User) -> int:
    """Seconds recorded today (the member's local day) in the sessions started today: the
    sessions service's own totals, read live. (The nightly summary of ``/reports/daily``
    only covers finished days.)"""
    message = sessions_pb2.ListSessionsRequest(
        user_id=member.id, started_from=local_midnight(member.timezone), page_size=PAGE
    )
    reply = await call(request, sessions_stub(request).ListSessions, message)
    return sum(s.total_active_seconds + s.total_idle_seconds for s in reply.sessions)


async def today_by_member(request: Request, found: list[auth_pb2.User]) -> dict[str, int]:
    totals = await asyncio.gather(*(today_seconds(request, m) for m in found))
    return {m.id: t for m, t in zip(found, totals, strict=True)}


async def open_alerts(request: Request, user_id: str = "") -> list[scheduler_pb2.Alert]:
    message = scheduler_pb2.ListAlertsRequest(user_id=user_id, page_size=100, acknowledged=False)
    return list((await call(request, scheduler(request).ListAlerts, message)).alerts)
