"""The dashboard's browser security rules: the Content-Security-Policy with a nonce per
response, the refresh-token cookie, and the CSRF check of cookie-authenticated requests.

Only the refresh token is ever a cookie, and only ``/ui/session/*`` receives it
(``Path``), so the cookie authenticates nothing but those endpoints; every other request
carries the in-memory access token as ``Authorization: Bearer``, which a cross-site page
cannot attach. The session endpoints then accept a request only when it carries the
custom header (a cross-site form or ``fetch`` cannot send one without a CORS preflight,
which the gateway refuses for it) and the browser says it came from this origin.
"""

from __future__ import annotations

import secrets
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import HTTPError

R = TypeVar("R", bound=Response)

REFRESH_COOKIE = "wp_refresh"
SESSION_PATH = "/ui/session"  # the cookie's Path: the log-in, refresh and log-out endpoints
CSRF_HEADER = "x-workpulse-csrf"
# How long a browser keeps the cookie; auth decides how long the token inside is good for.
COOKIE_MAX_AGE = 30 * 24 * 3600
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def content_security_policy(nonce: str) -> str:
    """Scripts only with this response's nonce (no inline handlers, no eval); styles, images
    and connections (fetch, ``/ws``) only from this origin; no plugins, no ``<base>``, no
    framing."""
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src 'nonce-{nonce}'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        )
    )


def protect(response: R, nonce: str) -> R:
    """The headers every dashboard HTML response carries."""
    response.headers["Content-Security-Policy"] = content_security_policy(nonce)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def plain_localhost(request: Request) -> bool:
    """Plain http to this machine: the one case where a ``Secure`` cookie would never be
    sent back (browsers treat http://localhost as secure, but not every client does)."""
    return request.url.scheme == "http" and (request.url.hostname or "") in LOCAL_HOSTS


def set_refresh_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        REFRESH_COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        path=SESSION_PATH,
        secure=not plain_localhost(request),
        httponly=True,
        samesite="strict",
    )


def clear_refresh_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        REFRESH_COOKIE, path=SESSION_PATH, secure=not plain_localhost(request), httponly=True, samesite="strict"
    )


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def require_same_origin(request: Request) -> None:
    """403 unless the request carries the CSRF header and its browser says it is same-origin:
    ``Sec-Fetch-Site: same-origin`` when sent, an ``Origin`` equal to ours when sent, and at
    least one of the two."""
    if request.headers.get(CSRF_HEADER) != "1":
        raise HTTPError(403, f"missing {CSRF_HEADER} header")
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is None and origin is None:
        raise HTTPError(403, "cross-site request refused: no Origin")
    if site is not None and site != "same-origin":
        raise HTTPError(403, "cross-site request refused")
    if origin is not None and origin != own_origin(request):
        raise HTTPError(403, "cross-site request refused: foreign Origin")
