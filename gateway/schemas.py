"""The gateway's response bodies, for ``/openapi.json`` only: one model per shape the
handlers write (``user_json``, ``session_json``, ``project_json``, ...), key for key.

Handlers build plain dicts, so nothing checks these at run time except the schemathesis
test (tests/e2e/test_schemathesis.py), which compares live responses with them. Every
key is always present (``required``); a value that may be null says so; no other key
appears (``additionalProperties: false``), so a key added to a handler and not here
fails that test instead of going undocumented.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from workpulse.ingest.v1 import ingest_pb2

Role = Literal["admin", "manager", "employee"]
AlertType = Literal["INACTIVE_ALERT", "OVERTIME_ALERT"]
# The reasons record_batch writes (activity.py's _REASONS), as the enum of Rejected.reason.
REJECT_REASONS: list[JsonValue] = [
    *sorted(n.removeprefix("REJECT_REASON_").lower() for n, _ in ingest_pb2.RejectReason.items())
]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(Out):
    """Every failure's body (the original's)."""

    statusCode: int = Field(description="the HTTP status, repeated")
    message: str = Field(description="what went wrong; a 400 names the field first ('events.3.durationSeconds: ...')")
    timestamp: dt.datetime
    path: str = Field(description="the request's path")


class User(Out):
    id: UUID
    email: str
    name: str
    role: Role
    organization_id: UUID
    status: Literal["active", "disabled"]
    timezone: str = Field(description="IANA zone")
    last_seen: dt.datetime | None
    created_at: dt.datetime
    workspace: str = Field(description="the organization's workspace name, to log in with")


class Organization(Out):
    id: UUID
    name: str
    workspace: str = Field(description="unique name people log in with (lowercase letters, digits, hyphens)")
    plan_type: str
    timezone: str = Field(description="IANA zone")
    created_at: dt.datetime


class AuthSession(Out):
    """Register, log in and refresh: the user and a token pair."""

    user: User
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="seconds until access_token expires")


class Invite(Out):
    id: UUID
    organization_id: UUID
    email: str
    role: Role
    token: str = Field(description="give it to the invitee: POST /auth/register with organization_id and invite_token")
    expires_at: dt.datetime
    workspace: str = Field(description="the organization's workspace name, for the invitee's log-ins")


class WorkSession(Out):
    """The original's session object."""

    id: UUID
    user_id: UUID
    organization_id: UUID
    project_id: UUID | None
    start_time: dt.datetime
    end_time: dt.datetime | None
    status: Literal["active", "stopped"]
    total_active_seconds: int
    total_idle_seconds: int
    last_activity_at: dt.datetime | None
    version: int = Field(description="bumped on every change; send it to stop to detect a concurrent change (409)")


class SessionTotals(Out):
    """A session's totals after recording activity."""

    id: UUID
    total_active_seconds: int
    total_idle_seconds: int
    status: Literal["active", "stopped"]
    version: int
    last_activity_at: dt.datetime | None


class ActivityRecorded(Out):
    message: str
    clientEventId: str = Field(description="the event's clientEventId as sent ('' when none was)")
    duplicate: bool = Field(description="true when an event with this clientEventId was already recorded")
    session: SessionTotals | None = Field(description="null while totals_pending")
    totals_pending: bool = Field(description="true (with status 202) when the event is stored, its totals not yet")


class Rejected(Out):
    index: int = Field(description="position of the event in the batch")
    clientEventId: str
    reason: str = Field(json_schema_extra={"enum": REJECT_REASONS})
    message: str


class BatchRecorded(Out):
    message: str
    count: int = Field(description="events recorded: accepted plus duplicates")
    accepted: int
    duplicates: int
    rejected: list[Rejected]
    session: SessionTotals | None = Field(description="null while totals_pending")
    totals_pending: bool = Field(description="true (with status 202) when the events are stored, totals not yet")


class Project(Out):
    id: UUID
    organization_id: UUID
    name: str
    description: str = Field(description="'' when none was given")
    created_at: dt.datetime
    updated_at: dt.datetime


class ProjectDeleted(Out):
    id: UUID
    message: str


class DailySummary(Out):
    user_id: UUID
    date: dt.date
    total_work_seconds: int
    active_seconds: int
    idle_seconds: int
    agent_silent_seconds: int = Field(description="work time no event covers: the agent sent nothing")
    productivity_score: float
    sessions_count: int


class TodaySummaries(Out):
    summaries: list[DailySummary] = Field(description="one per member, in userIds order; zeros when nothing yet")


class UserReport(Out):
    user_id: UUID
    start_date: dt.date
    end_date: dt.date
    total_work_seconds: int
    total_active_seconds: int
    total_idle_seconds: int
    total_agent_silent_seconds: int
    average_productivity_score: float
    days_worked: int
    daily_summaries: list[DailySummary]


class Alert(Out):
    id: UUID
    organization_id: UUID
    user_id: UUID
    session_id: UUID | None
    type: AlertType | None
    message: str
    alert_date: dt.date
    created_at: dt.datetime | None
    resolved_at: dt.datetime | None
    acknowledged_by: UUID | None
    acknowledged_at: dt.datetime | None
    idle_minutes: int | None = Field(description="INACTIVE_ALERT only")
    work_hours: float | None = Field(description="OVERTIME_ALERT only")


class AlertPage(Out):
    alerts: list[Alert]
    next_page_token: str | None = Field(description="pass as pageToken for the next page; null on the last")


class AlertSettings(Out):
    organization_id: UUID
    idle_minutes: int
    overtime_hours: float


class Check(Out):
    status: Literal["up", "down"]
    message: str | None = Field(None, description="the failure's kind, when down")


class Health(Out):
    """Terminus's shape: every part under details, split into info (up) and error (down)."""

    status: Literal["ok", "error"]
    info: dict[str, Check]
    error: dict[str, Check]
    details: dict[str, Check]


# The desktop agent's policy (gateway/routes/agent_policy.py). A stored policy's null
# inherits (a user's override from the organization's defaults, those from the
# product's); an effective one has every value set.

AgentField = Literal["app", "title", "url"]


class AgentRule(Out):
    field: AgentField = Field(description="which text of an event the rule looks at")
    pattern: str = Field(description="regular expression (Python re), searched anywhere, case-insensitive")


class TrackingWindow(Out):
    weekdays: list[int] = Field(description="ISO weekdays the window starts on, 1 (Monday) .. 7; empty: every day")
    start: str = Field(description='"HH:MM", 24-hour')
    end: str = Field(description='"HH:MM"; before start: runs past midnight; equal to start: 24 hours')


class TrackingHours(Out):
    timezone: str = Field(description="IANA zone the windows are in")
    windows: list[TrackingWindow]


class StoredAgentPolicy(Out):
    """As stored: null inherits."""

    idleThresholdSeconds: int | None = Field(description="1..3600; seconds without input before idle")
    windowSampleSeconds: int | None = Field(description="1..60; how often the active window is sampled")
    idleSampleSeconds: int | None = Field(description="1..60; how often idle time is read")
    collectTitles: bool | None = Field(description="whether window titles leave the device")
    collectUrls: bool | None = Field(description="whether URLs leave the device")
    dropRules: list[AgentRule] = Field(description="an event matching one is never recorded")
    redactRules: list[AgentRule] = Field(description="the matching part is replaced by [redacted]")
    trackingHours: TrackingHours | None = Field(description="null: inherited (the product's: always)")
    agentSilenceSeconds: int | None = Field(description="30..86400; an open session whose agent is silent this long")
    shareCurrentApp: bool | None = Field(description="whether managers see the member's current app live")


class UserAgentPolicy(Out):
    userId: UUID
    policy: StoredAgentPolicy


class OrganizationAgentPolicy(Out):
    version: int = Field(description="0 while none was stored; send it as expectedVersion to detect a change (409)")
    defaults: StoredAgentPolicy
    users: list[UserAgentPolicy] = Field(description="per-user overrides, one per user")
    updatedAt: dt.datetime | None = Field(description="null while none was stored")


class EffectiveAgentPolicy(Out):
    """Merged: the product's defaults, the organization's, the user's override."""

    idleThresholdSeconds: int
    windowSampleSeconds: int
    idleSampleSeconds: int
    collectTitles: bool
    collectUrls: bool
    dropRules: list[AgentRule] = Field(description="the organization's, then the user's")
    redactRules: list[AgentRule] = Field(description="the organization's, then the user's")
    trackingHours: TrackingHours | None = Field(description="null: always")
    agentSilenceSeconds: int
    shareCurrentApp: bool


class AgentPolicyOfUser(Out):
    version: int = Field(description="the organization's policy version (0: never stored)")
    policy: EffectiveAgentPolicy
