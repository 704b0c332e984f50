"""Every REST route module; each exports ``routes``. One line per module."""

from __future__ import annotations

from importlib import import_module

from starlette.routing import BaseRoute

ROUTE_MODULES: tuple[str, ...] = (
    "gateway.routes.auth",
    "gateway.routes.sessions",
    "gateway.routes.projects",
    "gateway.routes.activity",
    "gateway.routes.reports",
    "gateway.routes.agent_policy",
)


def all_routes() -> list[BaseRoute]:
    found: list[BaseRoute] = []
    for name in ROUTE_MODULES:
        found.extend(import_module(name).routes)
    return found
