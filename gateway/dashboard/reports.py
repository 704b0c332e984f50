"""The Reports page's fragments: one member's days over a range (the RPC of
``GET /reports/user/{id}``) as a table and a chart; the CSV is ``/reports/export.csv``
itself, fetched by the page's module with the bearer token and saved as a file."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.dashboard import reads
from gateway.dashboard.fragments import guarded
from gateway.dashboard.templating import Renderer
from gateway.rpc import call
from gateway.wire import query_id
from workpulse.scheduler.v1 import scheduler_pb2 as pb

DEFAULT_DAYS = 14


def chart_data(summaries: list[pb.DailySummary], start: str, end: str) -> dict[str, list[Any]]:
    """What the module's uPlot chart draws: every day of the range, the service's numbers
    on the days it reported and nothing recorded (0) on the others."""
    by_day = {s.date: s for s in summaries}
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    return {
        "dates": days,
        "active": [by_day[d].active_seconds if d in by_day else 0 for d in days],
        "idle": [by_day[d].idle_seconds if d in by_day else 0 for d in days],
    }


def routes(renderer: Renderer) -> list[BaseRoute]:
    async def form(request: Request) -> Response:
        members = await reads.members(request)
        today = datetime.now(UTC).date()
        start = (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        return renderer.render(request, "reports/_form.html", members=members, start=start, end=today.isoformat())

    async def view(request: Request) -> Response:
        q = request.query_params
        message = pb.GetUserReportRequest(
            user_id=query_id(request, "userId"), start_date=q.get("startDate", ""), end_date=q.get("endDate", "")
        )
        reply = await call(request, reads.scheduler(request).GetUserReport, message)
        days = list(reply.daily_summaries)
        chart = chart_data(days, reply.start_date, reply.end_date)
        return renderer.render(request, "reports/_view.html", report=reply, days=days, chart=chart)

    return [
        Route("/ui/reports/form", guarded(renderer, form), methods=["GET"]),
        Route("/ui/reports/view", guarded(renderer, view), methods=["GET"]),
    ]
