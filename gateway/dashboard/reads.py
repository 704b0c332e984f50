"""What the dashboard reads from the services, through the RPCs the REST routes use and
with the caller's own token (``gateway.rpc.call``): the services scope every answer."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from gateway.routes.sessions import sessions_stub
from gateway.rpc import call, peers
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc
from workpulse.realtime.v1 import realtime_pb2, realtime_pb2_grpc
from workpulse.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from workpulse.sessions.v1 import sessions_pb2

PAGE = 200
TODAY_BATCH = 500  # ListTodaySummaries' limit


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


async def named(request: Request, user_ids: list[str]) -> list[auth_pb2.User]:
    """The named members the caller may see (auth leaves the others out), one request."""
    message = auth_pb2.ListUsersRequest(user_ids=user_ids)
    return list((await call(request, auth(request).ListUsers, message)).users)


async def presence(request: Request, user_ids: list[str] | None = None) -> dict[str, realtime_pb2.UserPresence]:
    """Who is online (only ``user_ids`` when given: realtime reads just those)."""
    message = realtime_pb2.GetPresenceRequest(user_ids=user_ids or [])
    reply = await call(request, realtime(request).GetPresence, message)
    return {p.user_id: p for p in reply.users}


async def active_sessions(request: Request) -> dict[str, sessions_pb2.Session]:
    reply = await call(request, sessions_stub(request).ListActiveSessions, sessions_pb2.ListActiveSessionsRequest())
    return {s.user_id: s for s in reply.sessions}


async def project_names(request: Request) -> dict[str, str]:
    reply = await call(request, sessions_stub(request).ListProjects, sessions_pb2.ListProjectsRequest())
    return {p.id: p.name for p in reply.projects}


async def today(request: Request, user_ids: list[str]) -> dict[str, scheduler_pb2.DailySummary]:
    """Each member's today so far, computed live by the scheduler (``GET /reports/today``'s
    RPC), in batches of the most it takes."""
    chunks = [user_ids[i : i + TODAY_BATCH] for i in range(0, len(user_ids), TODAY_BATCH)]
    replies = await asyncio.gather(
        *(
            call(request, scheduler(request).ListTodaySummaries, scheduler_pb2.ListTodaySummariesRequest(user_ids=c))
            for c in chunks
        )
    )
    return {s.user_id: s for reply in replies for s in reply.summaries}


async def open_alerts(request: Request, user_id: str = "") -> list[scheduler_pb2.Alert]:
    message = scheduler_pb2.ListAlertsRequest(user_id=user_id, page_size=100, acknowledged=False)
    return list((await call(request, scheduler(request).ListAlerts, message)).alerts)
