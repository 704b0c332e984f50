"""Work sessions and projects: plain data and the rules on them (no gRPC, no SQL)."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workpulse.errors import InvalidArgument

ACTIVE = "active"
STOPPED = "stopped"
STATUSES = (ACTIVE, STOPPED)

SESSION_STARTED = "SESSION_STARTED"
SESSION_STOPPED = "SESSION_STOPPED"
SESSION_UPDATE = "SESSION_UPDATE"

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
MAX_PROJECT_NAME = 200
MAX_PROJECT_DESCRIPTION = 2000
MAX_IDEMPOTENCY_KEY = 200
# One hand-off from ingest never carries more than a few days of seconds; anything
# larger is a bug upstream, refused rather than silently inflating the totals.
MAX_APPLIED_SECONDS = 7 * 24 * 3600
# Hand-offs per ApplyActivityBatch call (ingest coalesces those of concurrent writes).
MAX_APPLY_BATCH = 1000


@dataclass(frozen=True, slots=True)
class WorkSession:
    id: str
    organization_id: str
    user_id: str
    project_id: str | None
    start_time: datetime
    end_time: datetime | None
    status: str
    total_active_seconds: int
    total_idle_seconds: int
    last_activity_at: datetime | None
    version: int

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE

    def event_payload(self) -> dict[str, Any]:
        """The body of SESSION_STARTED, SESSION_STOPPED and SESSION_UPDATE (API.md): flat
        fields, and the session object under ``session``, which the original's clients read
        (``data.session``). The gateway's on-connect snapshot builds the same keys."""
        return {
            "sessionId": self.id,
            "userId": self.user_id,
            "organizationId": self.organization_id,
            "projectId": self.project_id,
            "total_active_seconds": self.total_active_seconds,
            "total_idle_seconds": self.total_idle_seconds,
            "status": self.status,
            "version": self.version,
            "startTime": _iso(self.start_time),
            "endTime": _iso(self.end_time),
            "session": self.session_object(),
        }

    def session_object(self) -> dict[str, Any]:
        """The session object of the REST API (same keys as the gateway's session JSON)."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "organization_id": self.organization_id,
            "project_id": self.project_id,
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
            "status": self.status,
            "total_active_seconds": self.total_active_seconds,
            "total_idle_seconds": self.total_idle_seconds,
            "last_activity_at": _iso(self.last_activity_at),
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    organization_id: str
    name: str
    description: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who reads: employees see only their own sessions, managers and admins the organization's."""

    user_id: str
    sees_organization: bool

    def may_see(self, session: WorkSession) -> bool:
        return self.sees_organization or session.user_id == self.user_id


@dataclass(frozen=True, slots=True)
class ActivityDelta:
    """Seconds handed over by ingest, counted once per idempotency key."""

    organization_id: str
    session_id: str
    idempotency_key: str
    active_seconds: int
    idle_seconds: int
    last_activity_at: datetime | None
    event_count: int
    # The latest active event's timestamp; None: last_activity_at stands for it.
    last_active_at: datetime | None = None

    @property
    def carries_activity(self) -> bool:
        """Whether the hand-off reports anything at all: what agent silence is measured by."""
        return self.event_count > 0 or self.active_seconds > 0 or self.idle_seconds > 0

    @property
    def latest_active(self) -> datetime | None:
        """When the user was last active by this hand-off; None when it has no active time."""
        if self.active_seconds <= 0:
            return None
        return self.last_active_at or self.last_activity_at

    def __post_init__(self) -> None:
        if not self.idempotency_key or len(self.idempotency_key) > MAX_IDEMPOTENCY_KEY:
            message = f"idempotency_key must be 1..{MAX_IDEMPOTENCY_KEY} characters"
            raise InvalidArgument(message, field="idempotency_key")
        for name in ("active_seconds", "idle_seconds"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_APPLIED_SECONDS:
                raise InvalidArgument(f"{name} must be between 0 and {MAX_APPLIED_SECONDS}", field=name)
        if self.event_count < 0:
            raise InvalidArgument("event_count must not be negative", field="event_count")


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    user_id: str | None
    project_id: str | None
    started_from: datetime | None
    started_before: datetime | None
    status: str | None
    page_size: int
    after: PageCursor | None


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Keyset position in a history ordered by (start_time desc, id desc)."""

    start_time: datetime
    session_id: str

    def encode(self) -> str:
        raw = f"{self.start_time.isoformat()}|{self.session_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> PageCursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            stamp, _, session_id = raw.partition("|")
            return cls(datetime.fromisoformat(stamp), str(uuid.UUID(session_id)))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidArgument("page_token is not a token this service issued", field="page_token") from None

    @classmethod
    def after_session(cls, session: WorkSession) -> PageCursor:
        return cls(session.start_time, session.id)


def require_uuid(value: str, field: str) -> str:
    """The canonical form of a UUID, or InvalidArgument naming the field."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(f"{field} must be a UUID", field=field) from None


def optional_uuid(value: str, field: str) -> str | None:
    return require_uuid(value, field) if value else None


def page_size(requested: int) -> int:
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= requested <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be between 1 and {MAX_PAGE_SIZE}", field="page_size")
    return requested


def status_filter(value: str) -> str | None:
    if not value:
        return None
    if value not in STATUSES:
        raise InvalidArgument("status must be 'active' or 'stopped'", field="status")
    return value


def project_name(value: str) -> str:
    name = value.strip()
    if not 1 <= len(name) <= MAX_PROJECT_NAME:
        raise InvalidArgument(f"name must be 1..{MAX_PROJECT_NAME} characters", field="name")
    return name


def project_description(value: str) -> str:
    if len(value) > MAX_PROJECT_DESCRIPTION:
        raise InvalidArgument(f"description must be at most {MAX_PROJECT_DESCRIPTION} characters", field="description")
    return value


def _iso(value: datetime | None) -> str | None:
    """UTC with microseconds always, so payloads built in SQL (repository) read the same."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None
