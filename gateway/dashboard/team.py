"""The Team page's fragments: members and roles (the RPC of ``GET /users``) and
invitations (of ``POST /invites``; auth decides who may invite whom). The invite link
carries the invite in its fragment (``/join#…``), which browsers never send to a server."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.dashboard import reads
from gateway.dashboard.fragments import form_fields, guarded
from gateway.dashboard.security import own_origin
from gateway.dashboard.templating import Renderer
from gateway.errors import HTTPError
from gateway.routes.auth import ROLE_NAME, ROLE_WIRE
from gateway.rpc import call
from workpulse.auth.v1 import auth_pb2


def routes(renderer: Renderer) -> list[BaseRoute]:
    async def members(request: Request) -> Response:
        found = sorted(await reads.members(request), key=lambda m: m.name.lower())
        return renderer.render(request, "team/_members.html", members=found, roles=ROLE_NAME)

    async def create_invite(request: Request) -> Response:
        fields = await form_fields(request)
        role = fields.get("role", "")
        if role not in ROLE_WIRE:
            raise HTTPError(400, "role: must be admin, manager or employee")
        message = auth_pb2.CreateInviteRequest(email=fields.get("email", ""), role=ROLE_WIRE[role])
        reply = await call(request, reads.auth(request).CreateInvite, message)
        fragment = urlencode({"organization": reply.organization_id, "invite": reply.token, "email": reply.email})
        link = f"{own_origin(request)}/join#{fragment}"
        return renderer.render(request, "team/_invite.html", invite=reply, role=role, link=link)

    return [
        Route("/ui/team/members", guarded(renderer, members), methods=["GET"]),
        Route("/ui/team/invites", guarded(renderer, create_invite), methods=["POST"]),
    ]
