"""The dashboard's routes as one route of the gateway's router.

The REST routes are each a ``Route`` and each is documented in ``/openapi.json`` (a test
holds the two equal); the HTML pages and fragments are not part of that contract, so
they sit behind this one route, which tools walking the REST routes do not see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers, URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

_CHOSEN = "workpulse.dashboard.route"


class RouteGroup(BaseRoute):
    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = list(routes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: tuple[Match, Scope] | None = None
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return match, {**child, _CHOSEN: route}
            if match is Match.PARTIAL and partial is None:
                partial = (match, {**child, _CHOSEN: route})
        return partial or (Match.NONE, {})

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: BaseRoute = scope[_CHOSEN]
        await route.handle(scope, receive, send)


def wants_page(scope: Scope) -> bool:
    """A browser's navigation (it asks for HTML and carries no bearer token): how a page
    shares its path with a REST route (``/sessions``, ``/alerts``), whose clients send
    ``Accept: application/json`` or ``*/*``, or a token."""
    headers = Headers(scope=scope)
    if "authorization" in headers:
        return False
    if headers.get("sec-fetch-dest") == "document":
        return True
    first = headers.get("accept", "").split(",")[0].split(";")[0].strip().lower()
    return first == "text/html"


class PageRoute(Route):
    """A GET page that answers only browsers' navigations (:func:`wants_page`)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or not wants_page(scope):
            return Match.NONE, {}
        return super().matches(scope)
