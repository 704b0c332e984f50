"""The dashboard's log-in session: the refresh token in a cookie only these endpoints
receive, the access token in the JSON body (the page keeps it in memory).

- ``POST /ui/session`` ``{workspace, email, password}``: auth's ``LogIn`` (as
  ``/auth/login``); sets the cookie, answers ``{access_token, token_type, expires_in, user}``.
- ``POST /ui/session/join`` ``{organization_id, invite_token, name, email, password}``:
  auth's ``RegisterWithInvite`` (as ``/auth/register`` with an invite); the same answer.
- ``POST /ui/session/refresh``: auth's ``Refresh`` with the cookie's token (rotation: the
  cookie gets the new one); the same answer. 401 without a cookie or with a spent one.
- ``POST /ui/session/logout``: auth's ``LogOut`` (revokes the token and those rotated from
  it), clears the cookie; 204.

Each requires the CSRF header and a same-origin browser (gateway/dashboard/security.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.dashboard.security import (
    REFRESH_COOKIE,
    SESSION_PATH,
    clear_refresh_cookie,
    require_same_origin,
    set_refresh_cookie,
)
from gateway.errors import HTTPError, error_response
from gateway.routes.auth import user_json
from gateway.rpc import call, parse_body, peers
from gateway.wire import Body
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc


class LogInForm(Body):
    workspace: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class JoinForm(Body):
    organization_id: str = Field(min_length=1, max_length=64)
    invite_token: str = Field(min_length=1, max_length=512)
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


def _auth(request: Request) -> auth_pb2_grpc.AuthServiceAsyncStub:
    stub: auth_pb2_grpc.AuthServiceAsyncStub = peers(request).stub("auth", auth_pb2_grpc.AuthServiceStub)
    return stub


def _anonymous(request: Request) -> Request:
    """These calls authenticate by password or refresh token: a stale access token the page
    may still attach must not be forwarded (and fail them)."""
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"authorization"]
    return Request({**request.scope, "headers": headers}, request.receive)


def _session_body(user: auth_pb2.User, tokens: auth_pb2.Tokens) -> dict[str, Any]:
    return {
        "access_token": tokens.access_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in,
        "user": user_json(user),
    }


def _answer(request: Request, user: auth_pb2.User, tokens: auth_pb2.Tokens) -> JSONResponse:
    response = JSONResponse(_session_body(user, tokens), headers={"Cache-Control": "no-store"})
    set_refresh_cookie(response, request, tokens.refresh_token)
    return response


async def log_in(request: Request) -> JSONResponse:
    require_same_origin(request)
    form = await parse_body(request, LogInForm)
    message = auth_pb2.LogInRequest(email=form.email, password=form.password, organization=form.workspace)
    reply = await call(_anonymous(request), _auth(request).LogIn, message)
    return _answer(request, reply.user, reply.tokens)


async def join(request: Request) -> JSONResponse:
    require_same_origin(request)
    form = await parse_body(request, JoinForm)
    message = auth_pb2.RegisterWithInviteRequest(
        email=form.email,
        password=form.password,
        name=form.name,
        organization_id=form.organization_id,
        invite_token=form.invite_token,
    )
    reply = await call(_anonymous(request), _auth(request).RegisterWithInvite, message)
    return _answer(request, reply.user, reply.tokens)


async def refresh(request: Request) -> JSONResponse:
    require_same_origin(request)
    token = request.cookies.get(REFRESH_COOKIE, "")
    if not token:
        raise HTTPError(401, "not signed in")
    try:
        reply = await call(_anonymous(request), _auth(request).Refresh, auth_pb2.RefreshRequest(refresh_token=token))
    except HTTPError as exc:
        if exc.status == 401:  # spent or revoked: forget it, so the page shows the log-in form
            response = error_response(401, exc.message, request.url.path)
            clear_refresh_cookie(response, request)
            return response
        raise
    return _answer(request, reply.user, reply.tokens)


async def log_out(request: Request) -> Response:
    require_same_origin(request)
    token = request.cookies.get(REFRESH_COOKIE, "")
    if token:
        try:
            await call(_anonymous(request), _auth(request).LogOut, auth_pb2.LogOutRequest(refresh_token=token))
        except HTTPError as exc:
            if exc.status != 401:  # already spent or revoked is what log-out wants anyway
                raise
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    clear_refresh_cookie(response, request)
    return response


def routes() -> list[BaseRoute]:
    return [
        Route(SESSION_PATH, log_in, methods=["POST"]),
        Route(SESSION_PATH + "/join", join, methods=["POST"]),
        Route(SESSION_PATH + "/refresh", refresh, methods=["POST"]),
        Route(SESSION_PATH + "/logout", log_out, methods=["POST"]),
    ]
