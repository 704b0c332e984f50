"""Events, their audiences, presence and activity: plain rules, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

USER_ONLINE = "USER_ONLINE"
USER_OFFLINE = "USER_OFFLINE"
SESSION_UPDATE = "SESSION_UPDATE"
# A start is announced only as SESSION_STARTED; both carry SESSION_UPDATE's payload.
SESSION_STARTED = "SESSION_STARTED"
SESSION_STOPPED = "SESSION_STOPPED"
SESSION_EVENTS = (SESSION_UPDATE, SESSION_STARTED, SESSION_STOPPED)
INACTIVE_ALERT = "INACTIVE_ALERT"
OVERTIME_ALERT = "OVERTIME_ALERT"
# Published by realtime itself, like USER_ONLINE / USER_OFFLINE (services/realtime/silence.py).
USER_AGENT_SILENT = "USER_AGENT_SILENT"
USER_AGENT_RESUMED = "USER_AGENT_RESUMED"
# Folded by realtime: ingest's receipt of activity, and its agent policy changes.
ACTIVITY_RECORDED = "ACTIVITY_RECORDED"
AGENT_POLICY_UPDATED = "AGENT_POLICY_UPDATED"

# The agent policy's default allowance (ingest.proto, AgentPolicy.agent_silence_seconds).
DEFAULT_AGENT_SILENCE_SECONDS = 120
MAX_AGENT_SILENCE_SECONDS = 86400


def parse_stream_id(value: str) -> tuple[int, int]:
    """A Redis stream id ("<ms>-<seq>", or "<ms>") as a comparable pair; ValueError when malformed."""
    ms, dash, seq = value.partition("-")
    if not (ms.isascii() and ms.isdigit()) or (dash and not (seq.isascii() and seq.isdigit())):
        raise ValueError(f"not a stream id: {value!r}")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the events stream."""

    id: str
    type: str
    organization_id: str
    timestamp: str
    data_json: str
    user_id: str | None

    @property
    def position(self) -> tuple[int, int]:
        return parse_stream_id(self.id)

    def data(self) -> dict[str, Any]:
        loaded = json.loads(self.data_json)
        return loaded if isinstance(loaded, dict) else {}

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> Event:
        data_json = fields.get("data", "{}")
        try:
            data = json.loads(data_json)
        except ValueError:
            data = {}
        user = data.get("userId") if isinstance(data, dict) else None
        return cls(
            id=entry_id,
            type=fields.get("type", ""),
            organization_id=fields.get("org", ""),
            timestamp=fields.get("ts", ""),
            data_json=data_json,
            user_id=user if isinstance(user, str) else None,
        )


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who a stream is for: the audience rule of API.md applies to them."""

    user_id: str
    organization_id: str
    sees_organization: bool

    def may_see(self, event: Event) -> bool:
        if event.organization_id != self.organization_id:
            return False
        return self.sees_organization or event.user_id == self.user_id


def presence_payload(user_id: str, organization_id: str, timestamp: str) -> str:
    """The payload of USER_ONLINE / USER_OFFLINE (API.md: userId, organizationId, timestamp)."""
    return json.dumps({"userId": user_id, "organizationId": organization_id, "timestamp": timestamp})


@dataclass(frozen=True, slots=True)
class ActivityState:
    """What a user is doing, as the events tell it: the input of GetPresence's activity.

    ``contact_ms`` is when activity of the session last reached the server (the stream
    position of its ACTIVITY_RECORDED, or of a SESSION_UPDATE whose totals grew), or its
    start: the anchor of agent silence. The server's receipt, not the events' own
    timestamps: an agent that records but cannot deliver is silent to everyone watching.

    ``current_app`` is the ``appName`` of the session's latest ACTIVITY_RECORDED: None when
    its organization's policy does not share it (ingest then sends null), or the latest
    event had no app; it goes with the session (a stop or a new session clears it).
    """

    session_id: str | None = None
    active: bool = False
    last_activity_at: str | None = None
    total_active_seconds: int = 0
    total_idle_seconds: int = 0
    contact_ms: int | None = None
    current_app: str | None = None

    @property
    def contact_at(self) -> str | None:
        return iso_of_ms(self.contact_ms) if self.contact_ms is not None else None

    def to_json(self) -> str:
        # contactAt is for the silence scripts, which cannot format dates themselves.
        return json.dumps(
            {
                "sessionId": self.session_id,
                "active": self.active,
                "lastActivityAt": self.last_activity_at,
                "totalActive": self.total_active_seconds,
                "totalIdle": self.total_idle_seconds,
                "contactMs": self.contact_ms,
                "contactAt": self.contact_at,
                "currentApp": self.current_app,
            }
        )

    @classmethod
    def from_json(cls, raw: str | None) -> ActivityState:
        if not raw:
            return cls()
        d = json.loads(raw)
        contact, app = d.get("contactMs"), d.get("currentApp")  # absent in states stored before it
        return cls(
            d.get("sessionId"),
            bool(d.get("active")),
            d.get("lastActivityAt"),
            d["totalActive"],
            d["totalIdle"],
            int(contact) if isinstance(contact, int | float) else None,
            app if isinstance(app, str) and app else None,
        )


def iso_of_ms(ms: int) -> str:
    """Integer arithmetic, so the instant survives a round trip through a Timestamp exactly."""
    return datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000).isoformat()


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def next_activity(state: ActivityState, event: Event) -> ActivityState | None:
    """The user's activity after ``event``; None when the event says nothing about it.

    A SESSION_UPDATE of an active session whose active total grew means active; one whose
    idle total grew alone means idle; a stopped session clears it (the stop itself is one:
    sessions announces every stop as SESSION_UPDATE with status "stopped"). A stopped
    update of another session says nothing: activity stamped before a stop still counts
    after it, and may arrive once the user works in a newer session. SESSION_STARTED and
    SESSION_STOPPED read as SESSION_UPDATE (their payload is its). INACTIVE_ALERT means idle.
    Activity arriving for the current session (ACTIVITY_RECORDED, growing totals) and the
    session's start are contact (see :class:`ActivityState`); the current session's
    ACTIVITY_RECORDED also sets its current app (cleared by one whose appName is null).
    """
    if event.type == INACTIVE_ALERT:
        return replace(state, active=False)
    if event.type == ACTIVITY_RECORDED:
        data = event.data()
        if state.session_id is None or data.get("sessionId") != state.session_id:
            return None  # another session's upload says nothing of the open one's agent
        app = data.get("appName")
        return replace(
            state,
            contact_ms=max(state.contact_ms or 0, event.position[0]),
            current_app=app if isinstance(app, str) and app else None,
        )
    if event.type not in SESSION_EVENTS:
        return None
    data = event.data()
    session = data.get("sessionId")
    active_total, idle_total = _int(data.get("total_active_seconds")), _int(data.get("total_idle_seconds"))
    if data.get("status") != "active" or not isinstance(session, str):
        if isinstance(session, str) and state.session_id not in (None, session):
            return None  # an older session's late totals: the current one is unaffected
        return ActivityState()
    if session != state.session_id:
        # A session just started counts as active until its activity says otherwise.
        active, changed = not (idle_total > 0 and active_total == 0), active_total + idle_total > 0
        last = event.timestamp if changed else None
        return ActivityState(session, active, last, active_total, idle_total, event.position[0])
    grew_active, grew_idle = active_total > state.total_active_seconds, idle_total > state.total_idle_seconds
    active = True if grew_active else (False if grew_idle else state.active)
    last = event.timestamp if grew_active or grew_idle else state.last_activity_at
    contact = max(state.contact_ms or 0, event.position[0]) if grew_active or grew_idle else state.contact_ms
    return ActivityState(session, active, last, active_total, idle_total, contact, state.current_app)


@dataclass(frozen=True, slots=True)
class AgentAllowance:
    """An organization's agent silence allowance, from its AGENT_POLICY_UPDATED events."""

    organization_id: str
    version: int
    seconds: int | None  # None: the policy leaves it to the default


def allowance_of(event: Event) -> AgentAllowance | None:
    """The allowance an AGENT_POLICY_UPDATED announces; None when it is not one, or is
    malformed, or names another organization than the one it was published for (the
    stream entry's organization is the relay's, from the owning row: it decides)."""
    if event.type != AGENT_POLICY_UPDATED or not event.organization_id:
        return None
    data = event.data()
    version, seconds = data.get("version"), data.get("agentSilenceSeconds")
    if data.get("organizationId", event.organization_id) != event.organization_id:
        return None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return None
    if seconds is None:
        return AgentAllowance(event.organization_id, version, None)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= MAX_AGENT_SILENCE_SECONDS:
        return None
    return AgentAllowance(event.organization_id, version, seconds)


@dataclass(frozen=True, slots=True)
class Ready:
    """First item of every subscription: who it serves and until when."""

    viewer: Viewer
    role: str
    token_expires_at: int
    connection_id: str


@dataclass(frozen=True, slots=True)
class Resync:
    """The subscriber missed events that cannot be delivered; it should reload state."""

    reason: str
    last_id: str


@dataclass(frozen=True, slots=True)
class Keepalive:
    """Nothing happened for a while; the stream is alive."""


StreamItem = Ready | list[Event] | Resync | Keepalive
