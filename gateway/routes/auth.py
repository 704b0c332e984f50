"""Identity routes: register, log in, refresh, log out, the caller, invites and users.

Bodies are checked for shape and types here; the auth service owns the rules (password
length, email form, invites) and names the offending field in its INVALID_ARGUMENT.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.callers import ADMINS, MANAGING
from gateway.errors import HTTPError
from gateway.openapi import documented
from gateway.rpc import call, parse_body, peers
from gateway.wire import Body, WholeNumber, iso
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc

RoleName = Literal["admin", "manager", "employee"]
ROLE_NAME = {
    auth_pb2.ROLE_ADMIN: "admin",
    auth_pb2.ROLE_MANAGER: "manager",
    auth_pb2.ROLE_EMPLOYEE: "employee",
}
ROLE_WIRE = {name: wire for wire, name in ROLE_NAME.items()}


class RegisterBody(Body):
    email: str
    password: str
    name: str
    organization_name: str | None = Field(None, description="creates a new organization; you become its admin")
    organization_id: str | None = Field(None, description="joins this organization (needs invite_token)")
    invite_token: str | None = None
    timezone: str | None = Field(None, description="IANA zone of a new organization (UTC by default)")
    workspace: str | None = Field(
        None,
        description="a new organization's workspace name, to log in with (3-63 letters, digits, hyphens; "
        "409 when taken); derived from organization_name when absent",
    )
    role: RoleName | None = Field(None, description="accepted but never grants more than the invite does")


class LogInBody(Body):
    email: str
    password: str
    organization_id: str | None = Field(None, description="the organization's id (or give organization)")
    organization: str | None = Field(None, description="the organization's workspace name, in any letter case")


class WorkspaceBody(Body):
    workspace: str = Field(description="the new workspace name (3-63 letters, digits, hyphens; 409 when taken)")


class RefreshBody(Body):
    refresh_token: str


class InviteBody(Body):
    email: str
    role: RoleName
    ttl_hours: WholeNumber = Field(0, ge=0, le=2**31 - 1, description="lifetime in hours; service default (72) when 0")


def _auth(request: Request) -> auth_pb2_grpc.AuthServiceAsyncStub:
    stub: auth_pb2_grpc.AuthServiceAsyncStub = peers(request).stub("auth", auth_pb2_grpc.AuthServiceStub)
    return stub


def _anonymous(request: Request) -> Request:
    """The request without its bearer token. Browsers often attach their (possibly expired)
    access token to every call; register, log-in, refresh and log-out must not fail on it,
    and need no token, so none is forwarded."""
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"authorization"]
    return Request({**request.scope, "headers": headers}, request.receive)


def user_json(user: auth_pb2.User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": ROLE_NAME[user.role],
        "organization_id": user.organization_id,
        "status": user.status,
        "timezone": user.timezone,
        "last_seen": iso(user.last_seen, user.HasField("last_seen")),
        "created_at": iso(user.created_at),
        "workspace": user.workspace,
    }


def organization_json(organization: auth_pb2.Organization) -> dict[str, Any]:
    return {
        "id": organization.id,
        "name": organization.name,
        "workspace": organization.workspace,
        "plan_type": organization.plan_type,
        "timezone": organization.timezone,
        "created_at": iso(organization.created_at),
    }


def session_json(user: auth_pb2.User, tokens: auth_pb2.Tokens) -> dict[str, Any]:
    return {
        "user": user_json(user),
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in,
    }


@documented(
    "Sign up (new organization) or join one with an invite",
    body=RegisterBody,
    response="AuthSession",
    status=201,
    auth=False,
    errors=(400, 409, 413, 415, 429, 503),
)
async def register(request: Request) -> JSONResponse:
    body = await parse_body(request, RegisterBody)
    if body.organization_name is not None and (body.organization_id is not None or body.invite_token is not None):
        raise HTTPError(400, "organization_name: give either organization_name, or organization_id and invite_token")
    if body.workspace is not None and body.organization_name is None:
        raise HTTPError(400, "workspace: only a new organization (organization_name) is given one")
    if body.workspace is not None and not body.workspace:
        raise HTTPError(400, "workspace: must not be empty (leave it out to derive one from organization_name)")
    if body.organization_name is not None:
        signed_up = await call(
            _anonymous(request),
            _auth(request).SignUp,
            auth_pb2.SignUpRequest(
                email=body.email,
                password=body.password,
                name=body.name,
                organization_name=body.organization_name,
                timezone=body.timezone or "",
                workspace=body.workspace or "",
            ),
        )
        return JSONResponse(session_json(signed_up.user, signed_up.tokens), status_code=201)
    if body.organization_id is None:
        raise HTTPError(400, "organization_id: required to join an organization (or organization_name to create one)")
    if not body.invite_token:
        raise HTTPError(400, "invite_token: joining an organization needs an invite")
    joined = await call(
        _anonymous(request),
        _auth(request).RegisterWithInvite,
        auth_pb2.RegisterWithInviteRequest(
            email=body.email,
            password=body.password,
            name=body.name,
            organization_id=body.organization_id,
            invite_token=body.invite_token,
        ),
    )
    return JSONResponse(session_json(joined.user, joined.tokens), status_code=201)


@documented(
    "Log in with email, password and organization",
    body=LogInBody,
    response="AuthSession",
    auth=False,
    errors=(400, 401, 413, 415, 429, 503),
)
async def login(request: Request) -> JSONResponse:
    body = await parse_body(request, LogInBody)
    if body.organization_id is not None and body.organization is not None:
        raise HTTPError(400, "organization: give either organization (the workspace name) or organization_id, not both")
    if not (body.organization_id or body.organization):
        raise HTTPError(400, "organization_id: required (or organization, the workspace name)")
    reply = await call(
        _anonymous(request),
        _auth(request).LogIn,
        auth_pb2.LogInRequest(
            email=body.email,
            password=body.password,
            organization_id=body.organization_id or "",
            organization=body.organization or "",
        ),
    )
    return JSONResponse(session_json(reply.user, reply.tokens))


@documented(
    "Exchange a refresh token for a new token pair (rotation)",
    body=RefreshBody,
    response="AuthSession",
    auth=False,
    errors=(400, 401, 413, 415, 503),
)
async def refresh(request: Request) -> JSONResponse:
    body = await parse_body(request, RefreshBody)
    reply = await call(
        _anonymous(request), _auth(request).Refresh, auth_pb2.RefreshRequest(refresh_token=body.refresh_token)
    )
    return JSONResponse(session_json(reply.user, reply.tokens))


@documented(
    "Revoke a refresh token (and the tokens rotated from it)",
    body=RefreshBody,
    status=204,
    auth=False,
    errors=(400, 401, 413, 415, 503),
)
async def logout(request: Request) -> Response:
    body = await parse_body(request, RefreshBody)
    await call(_anonymous(request), _auth(request).LogOut, auth_pb2.LogOutRequest(refresh_token=body.refresh_token))
    return Response(status_code=204)


@documented("The caller's own user", response="User", errors=(401, 404, 503))
async def me(request: Request) -> JSONResponse:
    reply = await call(request, _auth(request).GetUser, auth_pb2.GetUserRequest())
    return JSONResponse(user_json(reply.user))


@documented(
    "A user of the caller's organization (managers and admins; employees only themselves)",
    response="User",
    errors=(400, 401, 403, 404, 503),
)
async def get_user(request: Request) -> JSONResponse:
    user_id = request.path_params["user_id"]
    reply = await call(request, _auth(request).GetUser, auth_pb2.GetUserRequest(user_id=user_id))
    return JSONResponse(user_json(reply.user))


@documented(
    "The organization's users (employees see only themselves); ?page_size=&page_token=",
    response="User[]",
    query={
        "page_size": "int 0..200: users per page; 50 when 0 or absent",
        "page_token": "string: the X-Next-Page-Token of the previous page",
    },
    headers={"X-Next-Page-Token": "page_token of the next page; absent on the last page"},
    errors=(400, 401, 503),
)
async def list_users(request: Request) -> JSONResponse:
    raw_size = request.query_params.get("page_size", "0")
    if not (raw_size.isascii() and raw_size.isdigit()):
        raise HTTPError(400, "page_size: must be a whole number")
    # Past nine digits it is out of range anyway; the service says what the range is.
    size = int(raw_size) if len(raw_size) <= 9 else 10**9
    message = auth_pb2.ListUsersRequest(page_size=size, page_token=request.query_params.get("page_token", ""))
    reply = await call(request, _auth(request).ListUsers, message)
    headers = {"X-Next-Page-Token": reply.next_page_token} if reply.next_page_token else {}
    return JSONResponse([user_json(u) for u in reply.users], headers=headers)


@documented(
    "Invite someone to the organization (admins; managers cannot invite admins)",
    roles=MANAGING,
    body=InviteBody,
    response="Invite",
    status=201,
    errors=(400, 401, 403, 409, 413, 415, 503),
)
async def create_invite(request: Request) -> JSONResponse:
    body = await parse_body(request, InviteBody)
    reply = await call(
        request,
        _auth(request).CreateInvite,
        auth_pb2.CreateInviteRequest(email=body.email, role=ROLE_WIRE[body.role], ttl_hours=body.ttl_hours),
    )
    invite = {
        "id": reply.id,
        "organization_id": reply.organization_id,
        "email": reply.email,
        "role": ROLE_NAME[reply.role],
        "token": reply.token,
        "expires_at": iso(reply.expires_at),
        "workspace": reply.workspace,
    }
    return JSONResponse(invite, status_code=201)


@documented(
    "Rename the caller's organization's workspace (admins); the old name stops working for log-in",
    roles=ADMINS,
    body=WorkspaceBody,
    response="Organization",
    errors=(400, 401, 403, 409, 413, 415, 503),
)
async def rename_workspace(request: Request) -> JSONResponse:
    body = await parse_body(request, WorkspaceBody)
    reply = await call(
        request, _auth(request).RenameWorkspace, auth_pb2.RenameWorkspaceRequest(workspace=body.workspace)
    )
    return JSONResponse(organization_json(reply.organization))


routes: list[BaseRoute] = [
    Route("/auth/register", register, methods=["POST"]),
    Route("/auth/login", login, methods=["POST"]),
    Route("/auth/refresh", refresh, methods=["POST"]),
    Route("/auth/logout", logout, methods=["POST"]),
    Route("/me", me, methods=["GET"]),
    Route("/users", list_users, methods=["GET"]),
    Route("/users/{user_id}", get_user, methods=["GET"]),
    Route("/invites", create_invite, methods=["POST"]),
    Route("/organization", rename_workspace, methods=["PUT"]),
]
