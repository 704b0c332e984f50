"""Request bodies of ``PUT /agent/policy``: the shape of each field (types, ranges, the
form of times and ids) as ``/openapi.json`` documents it, 400 naming the field. What
needs the product's rules (a pattern that compiles, a time zone that exists, one entry
per user) is the ingest service's; its refusals come back under these names too.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field, field_validator

from gateway.wire import Body, WholeNumber

HH_MM = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"
MAX_RULES = 100
MAX_USERS = 10_000
MAX_VERSION = 2**63 - 1  # the proto's int64

Weekday = Annotated[WholeNumber, Field(ge=1, le=7)]


class AgentRuleBody(Body):
    field: Literal["app", "title", "url"] = Field(description="which text of an event the rule looks at")
    pattern: str = Field(
        min_length=1, max_length=512, description="regular expression (Python re), searched anywhere, case-insensitive"
    )


class TrackingWindowBody(Body):
    weekdays: list[Weekday] = Field(
        default_factory=list, max_length=7, description="ISO weekdays, 1 (Monday) .. 7; empty: every day"
    )
    start: str = Field(pattern=HH_MM, description='"HH:MM", 24-hour')
    end: str = Field(pattern=HH_MM, description='"HH:MM"; before start: runs past midnight; equal: 24 hours')


class TrackingHoursBody(Body):
    timezone: str = Field(min_length=1, max_length=64, description="IANA zone, e.g. Europe/Berlin")
    windows: list[TrackingWindowBody] = Field(min_length=1, max_length=50)


class AgentPolicyBody(Body):
    """Every field optional: absent or null inherits."""

    idleThresholdSeconds: WholeNumber | None = Field(None, ge=1, le=3600, description="seconds without input: idle")
    windowSampleSeconds: WholeNumber | None = Field(None, ge=1, le=60, description="active-window sampling, seconds")
    idleSampleSeconds: WholeNumber | None = Field(None, ge=1, le=60, description="idle-time sampling, seconds")
    collectTitles: bool | None = Field(None, description="whether window titles leave the device")
    collectUrls: bool | None = Field(None, description="whether URLs leave the device")
    dropRules: list[AgentRuleBody] = Field(
        default_factory=list, max_length=MAX_RULES, description="an event matching one is never recorded"
    )
    redactRules: list[AgentRuleBody] = Field(
        default_factory=list, max_length=MAX_RULES, description="the matching part is replaced by [redacted]"
    )
    trackingHours: TrackingHoursBody | None = Field(None, description="when the agent records; null: inherited")
    agentSilenceSeconds: WholeNumber | None = Field(
        None, ge=30, le=86_400, description="an open session whose agent sent nothing this long is agent-silent"
    )
    shareCurrentApp: bool | None = Field(None, description="whether managers see the member's current app live")


class UserAgentPolicyBody(Body):
    userId: str = Field(json_schema_extra={"format": "uuid"}, description="the user the override is for")
    policy: AgentPolicyBody

    @field_validator("userId")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("must be a UUID") from None


class AgentPolicyPutBody(Body):
    expectedVersion: WholeNumber = Field(
        0, ge=0, le=MAX_VERSION, description="the version you read; 409 when it changed meanwhile. 0: replace any"
    )
    defaults: AgentPolicyBody = Field(description="the organization's defaults")
    users: list[UserAgentPolicyBody] = Field(
        default_factory=list, max_length=MAX_USERS, description="per-user overrides, at most one per user"
    )
