"""Cross-origin rules of the gateway: one list of origins (``CORS_ORIGINS``) for REST
preflights, ``/ws`` and Socket.IO alike.

Starlette's middleware answers a refused preflight in plain text; clients parse every
refusal of ours as the standard error body, so a refused preflight gets that body too.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import error_response

# Response headers a browser page may read: the page token of lists, the wait of a 429 and
# the mark of a replayed idempotent answer.
EXPOSED_HEADERS = ("X-Next-Page-Token", "Retry-After", "Idempotent-Replayed")
ALLOWED_HEADERS = ("authorization", "content-type", "idempotency-key")
ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS")


def origin_admitted(origins: Sequence[str], origin: str | None) -> bool:
    """Whether a live connection (``/ws``) from ``origin`` is admitted. Without a list every
    origin is (the agent and scripts send none; browsers' pages are then the operator's
    choice); with one, a browser's ``Origin`` must be on it."""
    return not origins or "*" in origins or origin is None or origin in origins


class StandardCors(CORSMiddleware):
    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = Headers(scope=scope)
            if "origin" in headers and "access-control-request-method" in headers:
                answer = self.preflight_response(request_headers=headers)
                if answer.status_code == 400:
                    kept = {k: v for k, v in answer.headers.items() if k.lower().startswith("access-control-")}
                    answer = error_response(400, bytes(answer.body).decode(), scope["path"], kept)
                await answer(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
