"""The Alerts page's fragments: open alerts (the RPC of ``GET /alerts``), acknowledge
(of ``POST /alerts/{id}/acknowledge``), and the thresholds (of ``/alerts/settings``;
the scheduler lets only admins change them)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.dashboard import reads
from gateway.dashboard.fragments import form_fields, guarded
from gateway.dashboard.templating import Renderer
from gateway.errors import HTTPError
from gateway.routes.auth import ROLE_NAME
from gateway.routes.reports import ALERT_TYPE_NAME, SettingsBody
from gateway.rpc import call, parse_data
from gateway.wire import path_id
from workpulse.scheduler.v1 import scheduler_pb2 as pb

KINDS = {"INACTIVE_ALERT": "Inactive", "OVERTIME_ALERT": "Overtime"}


def _number(raw: str, name: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise HTTPError(400, f"{name}: must be a number") from None


def routes(renderer: Renderer) -> list[BaseRoute]:
    def render_alerts(request: Request, alerts: list[pb.Alert], people: dict[str, str]) -> Response:
        kinds = {a.id: KINDS.get(ALERT_TYPE_NAME.get(a.type, ""), "Alert") for a in alerts}
        return renderer.render(request, "alerts/_list.html", alerts=alerts, people=people, kinds=kinds)

    async def open_alerts(request: Request) -> Response:
        alerts, members = await asyncio.gather(reads.open_alerts(request), reads.members(request))
        return render_alerts(request, alerts, {m.id: m.name for m in members})

    async def acknowledge(request: Request) -> Response:
        message = pb.AcknowledgeAlertRequest(alert_id=path_id(request, "alert_id"))
        reply, members = await asyncio.gather(
            call(request, reads.scheduler(request).AcknowledgeAlert, message), reads.members(request)
        )
        people = {m.id: m.name for m in members}
        kind = KINDS.get(ALERT_TYPE_NAME.get(reply.alert.type, ""), "Alert")
        return renderer.render(request, "alerts/_row.html", alert=reply.alert, people=people, kind=kind)

    async def settings(request: Request) -> Response:
        reply, caller = await asyncio.gather(
            call(request, reads.scheduler(request).GetAlertSettings, pb.GetAlertSettingsRequest()), reads.me(request)
        )
        editable = ROLE_NAME.get(caller.role) == "admin"
        return renderer.render(
            request, "alerts/_settings.html", settings=reply.settings, editable=editable, saved=False
        )

    async def update_settings(request: Request) -> Response:
        fields = await form_fields(request)
        idle = _number(fields.get("idle_minutes", ""), "idle_minutes")
        overtime = _number(fields.get("overtime_hours", ""), "overtime_hours")
        data = {"idle_minutes": int(idle) if idle.is_integer() else idle, "overtime_hours": overtime}
        body = parse_data(data, SettingsBody)
        message = pb.UpdateAlertSettingsRequest(idle_minutes=body.idle_minutes, overtime_hours=body.overtime_hours)
        reply = await call(request, reads.scheduler(request).UpdateAlertSettings, message)
        return renderer.render(request, "alerts/_settings.html", settings=reply.settings, editable=True, saved=True)

    return [
        Route("/ui/alerts", guarded(renderer, open_alerts), methods=["GET"]),
        Route("/ui/alerts/settings", guarded(renderer, settings), methods=["GET"]),
        Route("/ui/alerts/settings", guarded(renderer, update_settings), methods=["POST"]),
        Route("/ui/alerts/{alert_id}/acknowledge", guarded(renderer, acknowledge), methods=["POST"]),
    ]
