"""The managers' dashboard: server-rendered pages and fragments over the services' RPCs.

Public surface: :func:`dashboard_routes`, which ``gateway.app`` adds to its routes.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from gateway.dashboard import agent_policy, alerts, live, pages, reports, session, team, work_sessions
from gateway.dashboard.assets import Assets
from gateway.dashboard.routing import RouteGroup
from gateway.dashboard.templating import Renderer

__all__ = ["dashboard_routes"]


def dashboard_routes() -> list[BaseRoute]:
    """Every page, fragment, session endpoint and static file (hashed now, at start-up)."""
    assets = Assets()
    renderer = Renderer(assets)
    return [
        RouteGroup(
            [
                *assets.routes(),
                *session.routes(),
                *pages.routes(renderer),
                *live.routes(renderer),
                *work_sessions.routes(renderer),
                *alerts.routes(renderer),
                *reports.routes(renderer),
                *team.routes(renderer),
                *agent_policy.routes(renderer),
            ]
        )
    ]
