"""The desktop agent's policy: the organization's, as stored (read and replaced by
managers and admins), and a user's own effective one.

Bodies are camelCase like the rest of this product's additions; ingest owns every rule
(ranges, patterns, zones, who may) and its refusals name the proto's snake_case fields,
which are renamed here to the body's (``defaults.drop_rules.0.pattern`` →
``defaults.dropRules.0.pattern``), so a 400 names what the client sent.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from gateway.agent_policy_schemas import AgentPolicyBody, AgentPolicyPutBody
from gateway.callers import MANAGING
from gateway.errors import HTTPError
from gateway.openapi import documented
from gateway.rpc import call, parse_body, peers
from gateway.wire import iso
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc

# Body name -> proto field of AgentPolicy's scalars.
_SCALARS = {
    "idleThresholdSeconds": "idle_threshold_seconds",
    "windowSampleSeconds": "window_sample_seconds",
    "idleSampleSeconds": "idle_sample_seconds",
    "collectTitles": "collect_titles",
    "collectUrls": "collect_urls",
    "agentSilenceSeconds": "agent_silence_seconds",
    "shareCurrentApp": "share_current_app",
}
_FIELDS = {"app": pb.AGENT_FIELD_APP, "title": pb.AGENT_FIELD_TITLE, "url": pb.AGENT_FIELD_URL}
_FIELD_NAMES = {value: name for name, value in _FIELDS.items()}
_FIELD_PATH = re.compile(r"[a-z0-9_.]+")


def _stub(request: Request) -> ingest_pb2_grpc.IngestServiceAsyncStub:
    stub: ingest_pb2_grpc.IngestServiceAsyncStub = peers(request).stub("ingest", ingest_pb2_grpc.IngestServiceStub)
    return stub


def _policy_message(body: AgentPolicyBody) -> pb.AgentPolicy:
    message = pb.AgentPolicy(
        drop_rules=[pb.AgentRule(field=_FIELDS[r.field], pattern=r.pattern) for r in body.dropRules],
        redact_rules=[pb.AgentRule(field=_FIELDS[r.field], pattern=r.pattern) for r in body.redactRules],
    )
    for name, proto in _SCALARS.items():
        if (value := getattr(body, name)) is not None:
            setattr(message, proto, value)
    if (hours := body.trackingHours) is not None:
        message.tracking_hours.timezone = hours.timezone
        for w in hours.windows:
            message.tracking_hours.windows.add(weekdays=w.weekdays, start=w.start, end=w.end)
    return message


def _rules_json(rules: Any) -> list[dict[str, str]]:
    return [{"field": _FIELD_NAMES.get(r.field, "app"), "pattern": r.pattern} for r in rules]


def policy_json(message: pb.AgentPolicy) -> dict[str, Any]:
    """A policy's JSON: an unset scalar (inherited) is null; an effective policy has none."""
    found: dict[str, Any] = {
        name: getattr(message, proto) if message.HasField(proto) else None  # type: ignore[arg-type]
        for name, proto in _SCALARS.items()
    }
    hours = message.tracking_hours
    found |= {
        "dropRules": _rules_json(message.drop_rules),
        "redactRules": _rules_json(message.redact_rules),
        "trackingHours": {
            "timezone": hours.timezone,
            "windows": [{"weekdays": list(w.weekdays), "start": w.start, "end": w.end} for w in hours.windows],
        }
        if message.HasField("tracking_hours")
        else None,
    }
    return found


def organization_json(policy: pb.OrganizationAgentPolicy) -> dict[str, Any]:
    return {
        "version": policy.version,
        "defaults": policy_json(policy.defaults),
        "users": [{"userId": u.user_id, "policy": policy_json(u.policy)} for u in policy.users],
        "updatedAt": iso(policy.updated_at, policy.HasField("updated_at")),
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def rest_field_names(message: str) -> str:
    """``message`` with the field path it starts with in the body's names."""
    path, sep, rest = message.partition(": ")
    if not sep or _FIELD_PATH.fullmatch(path) is None:
        return message
    return ".".join(_camel(part) for part in path.split(".")) + sep + rest


@documented(
    "Your organization's agent policy as stored: its defaults and per-user overrides (managers and admins)",
    roles=MANAGING,
    response="OrganizationAgentPolicy",
    errors=(401, 403, 503),
)
async def get_agent_policy(request: Request) -> JSONResponse:
    reply = await call(request, _stub(request).GetOrganizationAgentPolicy, pb.GetOrganizationAgentPolicyRequest())
    return JSONResponse(organization_json(reply.policy))


@documented(
    "Replace your organization's agent policy (managers and admins); its version goes up by one. With "
    "expectedVersion, a policy changed meanwhile is 409 and nothing is stored",
    roles=MANAGING,
    body=AgentPolicyPutBody,
    response="OrganizationAgentPolicy",
    errors=(400, 401, 403, 409, 413, 415, 503),
)
async def put_agent_policy(request: Request) -> JSONResponse:
    body = await parse_body(request, AgentPolicyPutBody)
    message = pb.PutOrganizationAgentPolicyRequest(
        expected_version=body.expectedVersion,
        defaults=_policy_message(body.defaults),
        users=[pb.UserAgentPolicy(user_id=u.userId, policy=_policy_message(u.policy)) for u in body.users],
    )
    try:
        reply = await call(request, _stub(request).PutOrganizationAgentPolicy, message)
    except HTTPError as exc:
        if exc.status in (400, 409):
            raise HTTPError(exc.status, rest_field_names(exc.message), headers=exc.headers) from None
        raise
    return JSONResponse(organization_json(reply.policy))


@documented(
    "Your own effective agent policy (any user): the product's defaults, your organization's and your "
    "override merged, with the organization's policy version",
    response="AgentPolicyOfUser",
    errors=(401, 503),
)
async def get_effective_agent_policy(request: Request) -> JSONResponse:
    reply = await call(request, _stub(request).GetAgentPolicy, pb.GetAgentPolicyRequest())
    return JSONResponse({"version": reply.version, "policy": policy_json(reply.policy)})


routes: list[BaseRoute] = [
    Route("/agent/policy", get_agent_policy, methods=["GET"]),
    Route("/agent/policy", put_agent_policy, methods=["PUT"]),
    Route("/agent/policy/effective", get_effective_agent_policy, methods=["GET"]),
]
