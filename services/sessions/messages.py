"""Translation between domain objects and the generated protobuf messages."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from services.sessions.domain import Project, WorkSession
from workpulse.sessions.v1 import sessions_pb2 as pb


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def moment(message: Timestamp, present: bool) -> datetime | None:
    """The datetime of a Timestamp field, or None when the field was not set."""
    return message.ToDatetime(tzinfo=UTC) if present else None


def session_message(session: WorkSession) -> pb.Session:
    return pb.Session(
        id=session.id,
        organization_id=session.organization_id,
        user_id=session.user_id,
        project_id=session.project_id or "",
        start_time=timestamp(session.start_time),
        end_time=timestamp(session.end_time),
        status=session.status,
        total_active_seconds=session.total_active_seconds,
        total_idle_seconds=session.total_idle_seconds,
        last_activity_at=timestamp(session.last_activity_at),
        version=session.version,
    )


def project_message(project: Project) -> pb.Project:
    return pb.Project(
        id=project.id,
        organization_id=project.organization_id,
        name=project.name,
        description=project.description,
        created_at=timestamp(project.created_at),
        updated_at=timestamp(project.updated_at),
    )
