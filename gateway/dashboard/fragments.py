"""Fragment endpoints' common shape: render a template, or the designed error state when
a service refuses (the status kept, so the page's module and tests see it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs

from google.protobuf.timestamp_pb2 import Timestamp
from starlette.requests import Request
from starlette.responses import Response

from gateway.dashboard.templating import Renderer
from gateway.errors import HTTPError

Handler = Callable[[Request], Awaitable[Response]]

# What each refusal means to the person looking at the page.
EXPLANATIONS = {
    400: "That request was not understood",
    401: "Your session has ended. Sign in again.",
    403: "Your role does not allow this. You can see only your own data.",
    404: "Not found, or not yours to see. You can see only your own data unless you manage this team.",
    409: "That changed meanwhile; reload to see the current state.",
    429: "Too many requests; wait a moment and retry.",
    503: "A service is not answering right now; retry in a moment.",
}


def guarded(renderer: Renderer, handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except HTTPError as exc:
            explanation = EXPLANATIONS.get(exc.status, "Something went wrong.")
            return renderer.render(
                request, "_error.html", status=exc.status, code=exc.status, message=exc.message, explanation=explanation
            )

    return endpoint


async def form_fields(request: Request) -> dict[str, str]:
    """An htmx form post (``application/x-www-form-urlencoded``), last value of each name."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def query_date(request: Request, name: str, *, next_day: bool = False) -> Timestamp | None:
    """A ``YYYY-MM-DD`` filter as midnight UTC (of the day after, for an inclusive end)."""
    raw = request.query_params.get(name, "")
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise HTTPError(400, f"{name}: must be a date (YYYY-MM-DD)") from None
    if next_day:
        day += timedelta(days=1)
    stamp = Timestamp()
    stamp.FromDatetime(datetime(day.year, day.month, day.day, tzinfo=UTC))
    return stamp
