"""The Team page's agent policy editor: the organization's defaults' scalar settings (the
RPCs of ``GET`` / ``PUT /agent/policy``; ingest owns every range and who may). Rules,
tracking hours and per-user overrides are kept as stored; the version the form was
rendered with is the compare-and-set, so a policy changed meanwhile is 409."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.dashboard.fragments import form_fields, guarded
from gateway.dashboard.templating import Renderer
from gateway.errors import HTTPError
from gateway.rpc import call, peers
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc

NUMBERS = ("idle_threshold_seconds", "agent_silence_seconds")
SWITCHES = ("collect_titles", "collect_urls", "share_current_app")


def _stub(request: Request) -> ingest_pb2_grpc.IngestServiceAsyncStub:
    stub: ingest_pb2_grpc.IngestServiceAsyncStub = peers(request).stub("ingest", ingest_pb2_grpc.IngestServiceStub)
    return stub


def apply_form(defaults: pb.AgentPolicy, fields: dict[str, str]) -> pb.AgentPolicy:
    """``defaults`` with the form's scalars: an empty one is inherited (cleared)."""
    changed = pb.AgentPolicy()
    changed.CopyFrom(defaults)
    for name in NUMBERS:
        raw = fields.get(name, "").strip()
        if not raw:
            changed.ClearField(name)  # type: ignore[arg-type]
        elif raw.isascii() and raw.isdigit() and len(raw) <= 9:
            setattr(changed, name, int(raw))
        else:
            raise HTTPError(400, f"{name}: must be a whole number")
    for name in SWITCHES:
        raw = fields.get(name, "")
        if raw not in ("", "yes", "no"):
            raise HTTPError(400, f"{name}: must be yes, no or empty")
        if raw:
            setattr(changed, name, raw == "yes")
        else:
            changed.ClearField(name)  # type: ignore[arg-type]
    return changed


def routes(renderer: Renderer) -> list[BaseRoute]:
    def render(request: Request, policy: pb.OrganizationAgentPolicy, saved: bool) -> Response:
        return renderer.render(request, "team/_policy.html", policy=policy, saved=saved)

    async def show(request: Request) -> Response:
        reply = await call(request, _stub(request).GetOrganizationAgentPolicy, pb.GetOrganizationAgentPolicyRequest())
        return render(request, reply.policy, saved=False)

    async def save(request: Request) -> Response:
        fields = await form_fields(request)
        raw_version = fields.get("version", "")
        if not (raw_version.isascii() and raw_version.isdigit()):
            raise HTTPError(400, "version: must be a whole number")
        stored = await call(request, _stub(request).GetOrganizationAgentPolicy, pb.GetOrganizationAgentPolicyRequest())
        message = pb.PutOrganizationAgentPolicyRequest(
            expected_version=int(raw_version),
            defaults=apply_form(stored.policy.defaults, fields),
            users=list(stored.policy.users),
        )
        reply = await call(request, _stub(request).PutOrganizationAgentPolicy, message)
        return render(request, reply.policy, saved=True)

    return [
        Route("/ui/team/policy", guarded(renderer, show), methods=["GET"]),
        Route("/ui/team/policy", guarded(renderer, save), methods=["POST"]),
    ]
