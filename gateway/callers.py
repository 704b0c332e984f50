"""Who may learn why a request is malformed: authentication and role before validation.

The gateway validates bodies, queries and path parameters before any service sees the
request, while services verify the caller. Left alone, a caller without a token would
learn from a 400 what an authenticated route expects, and an employee what an admin's
route accepts. So a refusal of the request itself (400, 415) on an authenticated route is
answered only after the caller is verified here (401) and its role is one the route admits
(403). Only the refusal path pays for the verification; a valid request is verified by its
service as before.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.errors import HTTPError, error_response
from workpulse.errors import Unauthenticated
from workpulse.identity import TokenVerifier

REQUEST_REFUSALS = frozenset({400, 415})
# The ``roles`` of gateway.openapi.documented, as the services' use cases require them.
ADMINS = ("admin",)
MANAGING = ("admin", "manager")


def first_refusal(request: Request, refusal: HTTPError) -> HTTPError:
    """``refusal`` of the request's content, or the 401 / 403 its caller gets first."""
    operation = getattr(request.scope.get("endpoint"), "__openapi__", None)
    if refusal.status not in REQUEST_REFUSALS or operation is None or not operation.auth:
        return refusal
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return HTTPError(401, "missing bearer token")
    verifier: TokenVerifier = request.app.state.verifier
    try:
        caller = verifier.verify(token.strip())
    except Unauthenticated as exc:
        return HTTPError(401, exc.message)
    if operation.roles and caller.role not in operation.roles:
        return HTTPError(403, f"requires role {' or '.join(operation.roles)}")
    return refusal


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler of :class:`HTTPError`: the standard body of the first refusal."""
    assert isinstance(exc, HTTPError)
    answer = first_refusal(request, exc)
    return error_response(answer.status, answer.message, request.url.path, answer.headers)
