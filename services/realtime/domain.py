"""Events, their audiences, presence and activity: plain rules, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

USER_ONLINE = "USER_ONLINE"
USER_OFFLINE = "USER_OFFLINE"
SESSION_UPDATE = "SESSION_UPDATE"
INACTIVE_ALERT = "INACTIVE_ALERT"
OVERTIME_ALERT = "OVERTIME_ALERT"


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
    """What a user is doing, as the events tell it: the input of GetPresence's activity."""

    session_id: str | None = None
    active: bool = False
    last_activity_at: str | None = None
    total_active_seconds: int = 0
    total_idle_seconds: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "sessionId": self.session_id,
                "active": self.active,
                "lastActivityAt": self.last_activity_at,
                "totalActive": self.total_active_seconds,
                "totalIdle": self.total_idle_seconds,
            }
        )

    @classmethod
    def from_json(cls, raw: str | None) -> ActivityState:
        if not raw:
            return cls()
        d = json.loads(raw)
        return cls(d.get("sessionId"), bool(d.get("active")), d.get("lastActivityAt"), d["totalActive"], d["totalIdle"])


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def next_activity(state: ActivityState, event: Event) -> ActivityState | None:
    """The user's activity after ``event``; None when the event says nothing about it.

    A SESSION_UPDATE of an active session whose active total grew means active; one whose
    idle total grew alone means idle; a stopped session clears it (the stop itself is one:
    sessions announces every stop as SESSION_UPDATE with status "stopped"). A stopped
    update of another session says nothing: activity stamped before a stop still counts
    after it, and may arrive once the user works in a newer session. INACTIVE_ALERT means idle.
    """
    if event.type == INACTIVE_ALERT:
        return ActivityState(
            state.session_id, False, state.last_activity_at, state.total_active_seconds, state.total_idle_seconds
        )
    if event.type != SESSION_UPDATE:
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
        return ActivityState(session, active, last, active_total, idle_total)
    grew_active, grew_idle = active_total > state.total_active_seconds, idle_total > state.total_idle_seconds
    active = True if grew_active else (False if grew_idle else state.active)
    last = event.timestamp if grew_active or grew_idle else state.last_activity_at
    return ActivityState(session, active, last, active_total, idle_total)


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
