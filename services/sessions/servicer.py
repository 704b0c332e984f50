"""The SessionsService servicer: unpack the request, call one use case, pack the reply."""

from __future__ import annotations

from services.sessions import use_cases
from services.sessions.domain import ActivityDelta
from services.sessions.limits import READ, WRITE, RequestBudget
from services.sessions.messages import moment, project_message, session_message
from services.sessions.use_cases import ActivityWindows
from workpulse import faults
from workpulse.db import UnitOfWork
from workpulse.errors import InvalidArgument
from workpulse.identity import Principal
from workpulse.interceptors import principal
from workpulse.sessions.v1 import sessions_pb2 as pb
from workpulse.sessions.v1 import sessions_pb2_grpc as pb_grpc

SERVICE_NAME = "workpulse.sessions.v1.SessionsService"


class SessionsServicer(pb_grpc.SessionsServiceServicer):
    def __init__(self, uow: UnitOfWork, budget: RequestBudget, windows: ActivityWindows | None = None) -> None:
        self._uow = uow
        self._budget = budget
        self._windows = windows

    async def _caller(self, kind: str) -> Principal:
        caller = principal()
        await self._budget.spend(caller, kind)
        return caller

    async def StartSession(self, request: pb.StartSessionRequest, context: object) -> pb.StartSessionResponse:
        caller = await self._caller(WRITE)
        session = await use_cases.start_session(self._uow, caller, request.project_id)
        return pb.StartSessionResponse(session=session_message(session))

    async def StopSession(self, request: pb.StopSessionRequest, context: object) -> pb.StopSessionResponse:
        caller = await self._caller(WRITE)
        expected = request.expected_version if request.HasField("expected_version") else None
        session = await use_cases.stop_session(self._uow, self._windows, caller, request.session_id, expected)
        return pb.StopSessionResponse(session=session_message(session))

    async def GetSession(self, request: pb.GetSessionRequest, context: object) -> pb.GetSessionResponse:
        caller = await self._caller(READ)
        session = await use_cases.get_session(self._uow, caller, request.session_id, request.organization_id)
        return pb.GetSessionResponse(session=session_message(session))

    async def ListActiveSessions(
        self, request: pb.ListActiveSessionsRequest, context: object
    ) -> pb.ListActiveSessionsResponse:
        caller = await self._caller(READ)
        sessions = await use_cases.list_active_sessions(self._uow, caller)
        return pb.ListActiveSessionsResponse(sessions=[session_message(s) for s in sessions])

    async def ListSessions(self, request: pb.ListSessionsRequest, context: object) -> pb.ListSessionsResponse:
        caller = await self._caller(READ)
        sessions, next_token = await use_cases.list_sessions(
            self._uow,
            caller,
            user_id=request.user_id,
            project_id=request.project_id,
            started_from=moment(request.started_from, request.HasField("started_from")),
            started_before=moment(request.started_before, request.HasField("started_before")),
            status=request.status,
            requested_page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListSessionsResponse(sessions=[session_message(s) for s in sessions], next_page_token=next_token)

    async def ApplyActivity(self, request: pb.ApplyActivityRequest, context: object) -> pb.ApplyActivityResponse:
        session, duplicate = await use_cases.apply_activity(self._uow, principal(), _delta(request))
        # Tests kill here: applied and committed, never acknowledged (ingest must resend the same key).
        faults.reached("sessions.after_apply")
        return pb.ApplyActivityResponse(session=session_message(session), duplicate=duplicate)

    async def ApplyActivityBatch(
        self, request: pb.ApplyActivityBatchRequest, context: object
    ) -> pb.ApplyActivityBatchResponse:
        deltas = [_delta(item, f"items.{n}.") for n, item in enumerate(request.items)]
        applied = await use_cases.apply_activities(self._uow, principal(), deltas)
        faults.reached("sessions.after_apply")  # as ApplyActivity: committed, not yet acknowledged
        return pb.ApplyActivityBatchResponse(
            results=[
                pb.ApplyActivityResult(not_found=True)
                if found is None
                else pb.ApplyActivityResult(session=session_message(found[0]), duplicate=found[1])
                for found in applied
            ]
        )

    async def CreateProject(self, request: pb.CreateProjectRequest, context: object) -> pb.CreateProjectResponse:
        caller = await self._caller(WRITE)
        project = await use_cases.create_project(self._uow, caller, request.name, request.description)
        return pb.CreateProjectResponse(project=project_message(project))

    async def GetProject(self, request: pb.GetProjectRequest, context: object) -> pb.GetProjectResponse:
        caller = await self._caller(READ)
        project = await use_cases.get_project(self._uow, caller, request.project_id)
        return pb.GetProjectResponse(project=project_message(project))

    async def ListProjects(self, request: pb.ListProjectsRequest, context: object) -> pb.ListProjectsResponse:
        caller = await self._caller(READ)
        projects = await use_cases.list_projects(self._uow, caller)
        return pb.ListProjectsResponse(projects=[project_message(p) for p in projects])

    async def UpdateProject(self, request: pb.UpdateProjectRequest, context: object) -> pb.UpdateProjectResponse:
        caller = await self._caller(WRITE)
        name = request.name if request.HasField("name") else None
        description = request.description if request.HasField("description") else None
        project = await use_cases.update_project(self._uow, caller, request.project_id, name, description)
        return pb.UpdateProjectResponse(project=project_message(project))

    async def DeleteProject(self, request: pb.DeleteProjectRequest, context: object) -> pb.DeleteProjectResponse:
        caller = await self._caller(WRITE)
        await use_cases.delete_project(self._uow, caller, request.project_id)
        return pb.DeleteProjectResponse()


def _delta(request: pb.ApplyActivityRequest, field_prefix: str = "") -> ActivityDelta:
    """The hand-off a request carries; a bad field is named with ``field_prefix`` (the
    item's place in a batch)."""
    try:
        return use_cases.activity_delta(
            organization_id=request.organization_id,
            session_id=request.session_id,
            idempotency_key=request.idempotency_key,
            active_seconds=request.active_seconds,
            idle_seconds=request.idle_seconds,
            last_activity_at=moment(request.last_activity_at, request.HasField("last_activity_at")),
            event_count=request.event_count,
            last_active_at=moment(request.last_active_at, request.HasField("last_active_at")),
        )
    except InvalidArgument as exc:
        if not field_prefix:
            raise
        field = f"{field_prefix}{exc.field or 'item'}"
        raise InvalidArgument(f"{field_prefix}{exc.message}", field=field) from None
