"""Domain objects to and from the scheduler's protobuf messages."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from services.scheduler.domain import INACTIVE_ALERT, Alert, DailySummary, JobRun
from workpulse.scheduler.v1 import scheduler_pb2 as pb

ALERT_TYPES = {INACTIVE_ALERT: pb.ALERT_TYPE_INACTIVE, "OVERTIME_ALERT": pb.ALERT_TYPE_OVERTIME}
ALERT_TYPE_NAMES = {
    pb.ALERT_TYPE_UNSPECIFIED: "",
    pb.ALERT_TYPE_INACTIVE: INACTIVE_ALERT,
    pb.ALERT_TYPE_OVERTIME: "OVERTIME_ALERT",
}


def timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


def summary(s: DailySummary) -> pb.DailySummary:
    return pb.DailySummary(
        organization_id=s.organization_id,
        user_id=s.user_id,
        date=s.date.isoformat(),
        total_work_seconds=s.total_work_seconds,
        active_seconds=s.active_seconds,
        idle_seconds=s.idle_seconds,
        agent_silent_seconds=s.agent_silent_seconds,
        productivity_score=s.productivity_score,
        sessions_count=s.sessions_count,
        top_apps=[pb.AppUsage(app_name=a.app_name, active_seconds=a.active_seconds) for a in s.top_apps],
        timezone=s.timezone,
        computed_at=timestamp(s.computed_at),
    )


def alert(a: Alert) -> pb.Alert:
    return pb.Alert(
        id=a.id,
        organization_id=a.organization_id,
        user_id=a.user_id,
        session_id=a.session_id or "",
        type=ALERT_TYPES.get(a.type, pb.ALERT_TYPE_UNSPECIFIED),
        message=a.message,
        alert_date=a.alert_date.isoformat(),
        created_at=timestamp(a.created_at),
        resolved_at=timestamp(a.resolved_at),
        acknowledged_by=a.acknowledged_by or "",
        acknowledged_at=timestamp(a.acknowledged_at),
        idle_minutes=a.idle_minutes or 0,
        work_hours=a.work_hours or 0.0,
    )


def job_run(r: JobRun) -> pb.JobRun:
    return pb.JobRun(
        job=r.job,
        slot=timestamp(r.slot),
        started_at=timestamp(r.started_at),
        finished_at=timestamp(r.finished_at),
        rows=r.rows,
        error=r.error or "",
        attempts=r.attempts,
    )
