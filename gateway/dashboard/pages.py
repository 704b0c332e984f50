"""The dashboard's pages (all GET): shells rendered without any data (a plain navigation carries
no token); their fragments load once the page's module holds an access token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.dashboard.routing import PageRoute
from gateway.dashboard.templating import Renderer

# path -> (template, title); the order is the navigation's.
PAGES = {
    "/live": ("live.html", "Live"),
    "/sessions": ("sessions.html", "Sessions"),
    "/reports": ("reports.html", "Reports"),
    "/alerts": ("alerts.html", "Alerts"),
    "/team": ("team.html", "Team"),
}
NAVIGATION = [(path, title) for path, (_, title) in PAGES.items()]


def routes(renderer: Renderer) -> list[BaseRoute]:
    def page(template: str, title: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return renderer.render(request, template, title=title, navigation=NAVIGATION)

        return endpoint

    async def login(request: Request) -> Response:
        return renderer.render(request, "login.html", title="Sign in", navigation=[])

    async def join(request: Request) -> Response:
        return renderer.render(request, "join.html", title="Join your team", navigation=[])

    async def home(_: Request) -> Response:
        return RedirectResponse("/live", status_code=302)

    found: list[BaseRoute] = [
        Route("/", home, methods=["GET"]),
        Route("/login", login, methods=["GET"]),
        Route("/join", join, methods=["GET"]),
    ]
    # /sessions and /alerts are REST paths too: pages answer only navigations there.
    found.extend(PageRoute(path, page(t, title), methods=["GET"]) for path, (t, title) in PAGES.items())
    return found
