"""Translation between the agent policy's protobuf messages and its domain
(services/ingest/agent_policy.py). Nothing is checked here: the use cases check."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from typing import Literal, get_args

from services.ingest.agent_policy import (
    AgentPolicy,
    AgentRule,
    EffectivePolicy,
    OrganizationPolicy,
    TrackingHours,
    TrackingWindow,
)
from workpulse.ingest.v1 import ingest_pb2 as pb

_FIELD_NAMES = {pb.AGENT_FIELD_APP: "app", pb.AGENT_FIELD_TITLE: "title", pb.AGENT_FIELD_URL: "url"}
_FIELD_ENUMS = {name: value for value, name in _FIELD_NAMES.items()}
_Scalar = Literal[
    "idle_threshold_seconds",
    "window_sample_seconds",
    "idle_sample_seconds",
    "collect_titles",
    "collect_urls",
    "agent_silence_seconds",
    "share_current_app",
]
_SCALARS: tuple[_Scalar, ...] = get_args(_Scalar)


def _rules_of(messages: Iterable[pb.AgentRule]) -> tuple[AgentRule, ...]:
    # An unknown or unset field becomes "", which the check refuses by name.
    return tuple(AgentRule(_FIELD_NAMES.get(m.field, ""), m.pattern) for m in messages)


def policy_of(message: pb.AgentPolicy) -> AgentPolicy:
    """A stored policy as sent: unset scalars (and an unset tracking_hours) inherit."""
    hours = message.tracking_hours
    scalars = {name: getattr(message, name) if message.HasField(name) else None for name in _SCALARS}
    return AgentPolicy(
        **scalars,
        drop_rules=_rules_of(message.drop_rules),
        redact_rules=_rules_of(message.redact_rules),
        tracking_hours=TrackingHours(
            hours.timezone, tuple(TrackingWindow(tuple(w.weekdays), w.start, w.end) for w in hours.windows)
        )
        if message.HasField("tracking_hours")
        else None,
    )


def users_of(messages: Iterable[pb.UserAgentPolicy]) -> list[tuple[str, AgentPolicy]]:
    return [(m.user_id, policy_of(m.policy)) for m in messages]


def _rule_messages(rules: Iterable[AgentRule]) -> list[pb.AgentRule]:
    return [pb.AgentRule(field=_FIELD_ENUMS[r.field], pattern=r.pattern) for r in rules]


def _hours_message(hours: TrackingHours) -> pb.TrackingHours:
    windows = [pb.TrackingWindow(weekdays=list(w.weekdays), start=w.start, end=w.end) for w in hours.windows]
    return pb.TrackingHours(timezone=hours.timezone, windows=windows)


def policy_message(policy: AgentPolicy | EffectivePolicy) -> pb.AgentPolicy:
    """A stored policy (its unset fields stay unset) or an effective one (all set)."""
    message = pb.AgentPolicy(
        drop_rules=_rule_messages(policy.drop_rules), redact_rules=_rule_messages(policy.redact_rules)
    )
    for name in _SCALARS:
        if (value := getattr(policy, name)) is not None:
            setattr(message, name, value)
    if policy.tracking_hours is not None:
        message.tracking_hours.CopyFrom(_hours_message(policy.tracking_hours))
    return message


def organization_message(policy: OrganizationPolicy) -> pb.OrganizationAgentPolicy:
    message = pb.OrganizationAgentPolicy(
        version=policy.version,
        defaults=policy_message(policy.defaults),
        users=[pb.UserAgentPolicy(user_id=u, policy=policy_message(p)) for u, p in policy.users.items()],
    )
    if policy.updated_at is not None:
        message.updated_at.FromDatetime(policy.updated_at.astimezone(UTC))
    return message
