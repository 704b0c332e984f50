"""The AuthService RPCs: unpack the request, call one use case, pack the reply."""

from __future__ import annotations

from typing import Any

import grpc

from services.auth import commands, messages, use_cases
from services.auth.use_cases import Adapters
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc
from workpulse.interceptors import client_address, principal

# Callable without a token: they are how a caller obtains one (or the keys to check one).
PUBLIC_METHODS = ("SignUp", "RegisterWithInvite", "LogIn", "Refresh", "LogOut", "GetPublicKeys")

Context = grpc.aio.ServicerContext[Any, Any]


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, adapters: Adapters) -> None:
        self._a = adapters

    async def SignUp(self, request: auth_pb2.SignUpRequest, context: Context) -> auth_pb2.SignUpResponse:
        cmd = commands.SignUp(
            request.email,
            request.password,
            request.name,
            request.organization_name,
            request.timezone,
            client_address(),
            workspace=request.workspace,
        )
        organization, session = await use_cases.sign_up(self._a, cmd)
        return auth_pb2.SignUpResponse(
            user=messages.user(session.user),
            organization=messages.organization(organization),
            tokens=messages.tokens(session),
        )

    async def RegisterWithInvite(
        self, request: auth_pb2.RegisterWithInviteRequest, context: Context
    ) -> auth_pb2.RegisterWithInviteResponse:
        cmd = commands.RegisterWithInvite(
            request.email,
            request.password,
            request.name,
            request.organization_id,
            request.invite_token,
            client_address(),
        )
        session = await use_cases.register_with_invite(self._a, cmd)
        return auth_pb2.RegisterWithInviteResponse(user=messages.user(session.user), tokens=messages.tokens(session))

    async def LogIn(self, request: auth_pb2.LogInRequest, context: Context) -> auth_pb2.LogInResponse:
        cmd = commands.LogIn(
            request.email, request.password, request.organization_id, client_address(), request.organization
        )
        session = await use_cases.log_in(self._a, cmd)
        return auth_pb2.LogInResponse(user=messages.user(session.user), tokens=messages.tokens(session))

    async def Refresh(self, request: auth_pb2.RefreshRequest, context: Context) -> auth_pb2.RefreshResponse:
        session = await use_cases.refresh(self._a, request.refresh_token)
        return auth_pb2.RefreshResponse(user=messages.user(session.user), tokens=messages.tokens(session))

    async def LogOut(self, request: auth_pb2.LogOutRequest, context: Context) -> auth_pb2.LogOutResponse:
        await use_cases.log_out(self._a, request.refresh_token)
        return auth_pb2.LogOutResponse()

    async def GetUser(self, request: auth_pb2.GetUserRequest, context: Context) -> auth_pb2.GetUserResponse:
        found = await use_cases.get_user(self._a, principal(), request.user_id)
        return auth_pb2.GetUserResponse(user=messages.user(found))

    async def ListUsers(self, request: auth_pb2.ListUsersRequest, context: Context) -> auth_pb2.ListUsersResponse:
        query = commands.ListUsers(request.page_size, request.page_token, tuple(request.user_ids))
        page = await use_cases.list_users(self._a, principal(), query)
        return auth_pb2.ListUsersResponse(
            users=[messages.user(u) for u in page.users], next_page_token=page.next_page_token
        )

    async def CreateInvite(
        self, request: auth_pb2.CreateInviteRequest, context: Context
    ) -> auth_pb2.CreateInviteResponse:
        cmd = commands.CreateInvite(request.email, messages.role_from_wire(request.role), request.ttl_hours)
        issued = await use_cases.create_invite(self._a, principal(), cmd)
        invite = issued.invite
        return auth_pb2.CreateInviteResponse(
            id=invite.id,
            organization_id=invite.organization_id,
            email=invite.email,
            role=messages.ROLE_TO_WIRE[invite.role],
            token=issued.token,
            expires_at=messages.timestamp(invite.expires_at),
            workspace=issued.workspace,
        )

    async def RenameWorkspace(
        self, request: auth_pb2.RenameWorkspaceRequest, context: Context
    ) -> auth_pb2.RenameWorkspaceResponse:
        renamed = await use_cases.rename_workspace(self._a, principal(), request.workspace)
        return auth_pb2.RenameWorkspaceResponse(organization=messages.organization(renamed))

    async def GetPublicKeys(
        self, request: auth_pb2.GetPublicKeysRequest, context: Context
    ) -> auth_pb2.GetPublicKeysResponse:
        return auth_pb2.GetPublicKeysResponse(jwks_json=use_cases.public_keys(self._a))
