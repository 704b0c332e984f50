"""Projects: managers and admins write, everyone in the organization reads, deleting a
project keeps its sessions, and nobody sees another organization's projects."""

from __future__ import annotations

import uuid

import grpc
import pytest

from tests.sessions.conftest import Server, UserFactory, invalid_argument
from workpulse.sessions.v1 import sessions_pb2 as pb


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code()


async def test_project_lifecycle_keeps_sessions(sessions_server: Server, make_user: UserFactory) -> None:
    stub = sessions_server.stub
    manager = make_user("manager")
    employee = make_user(org=manager.org)
    created = (
        await stub.CreateProject(pb.CreateProjectRequest(name="  Apollo ", description="moon"), metadata=manager.md)
    ).project
    assert created.name == "Apollo" and created.description == "moon" and created.organization_id == manager.org

    listed = (await stub.ListProjects(pb.ListProjectsRequest(), metadata=employee.md)).projects
    assert [p.id for p in listed] == [created.id]
    got = (await stub.GetProject(pb.GetProjectRequest(project_id=created.id), metadata=employee.md)).project
    assert got == created

    renamed = (
        await stub.UpdateProject(pb.UpdateProjectRequest(project_id=created.id, name="Artemis"), metadata=manager.md)
    ).project
    assert renamed.name == "Artemis" and renamed.description == "moon"
    assert renamed.updated_at.ToDatetime() >= created.updated_at.ToDatetime()

    session = (await stub.StartSession(pb.StartSessionRequest(project_id=created.id), metadata=employee.md)).session
    assert session.project_id == created.id
    await stub.DeleteProject(pb.DeleteProjectRequest(project_id=created.id), metadata=manager.md)

    kept = (await stub.GetSession(pb.GetSessionRequest(session_id=session.id), metadata=employee.md)).session
    assert kept.project_id == created.id
    assert list((await stub.ListProjects(pb.ListProjectsRequest(), metadata=employee.md)).projects) == []
    gone = stub.GetProject(pb.GetProjectRequest(project_id=created.id), metadata=employee.md)
    assert await _code(gone) == grpc.StatusCode.NOT_FOUND
    await stub.StopSession(pb.StopSessionRequest(session_id=session.id), metadata=employee.md)
    start_on_deleted = stub.StartSession(pb.StartSessionRequest(project_id=created.id), metadata=employee.md)
    assert await _code(start_on_deleted) == grpc.StatusCode.NOT_FOUND
    delete_again = stub.DeleteProject(pb.DeleteProjectRequest(project_id=created.id), metadata=manager.md)
    assert await _code(delete_again) == grpc.StatusCode.NOT_FOUND


async def test_employees_cannot_write_projects(sessions_server: Server, make_user: UserFactory) -> None:
    stub = sessions_server.stub
    admin = make_user("admin")
    employee = make_user(org=admin.org)
    project = (await stub.CreateProject(pb.CreateProjectRequest(name="Ops"), metadata=admin.md)).project
    denied = [
        stub.CreateProject(pb.CreateProjectRequest(name="Mine"), metadata=employee.md),
        stub.UpdateProject(pb.UpdateProjectRequest(project_id=project.id, name="x"), metadata=employee.md),
        stub.DeleteProject(pb.DeleteProjectRequest(project_id=project.id), metadata=employee.md),
    ]
    for call in denied:
        assert await _code(call) == grpc.StatusCode.PERMISSION_DENIED
    assert (await stub.GetProject(pb.GetProjectRequest(project_id=project.id), metadata=admin.md)).project.name == "Ops"


async def test_projects_are_isolated_between_organizations(sessions_server: Server, make_user: UserFactory) -> None:
    stub = sessions_server.stub
    ours = make_user("admin")
    theirs = make_user("admin")
    project = (await stub.CreateProject(pb.CreateProjectRequest(name="Secret"), metadata=ours.md)).project
    request = pb.GetProjectRequest(project_id=project.id)
    assert await _code(stub.GetProject(request, metadata=theirs.md)) == grpc.StatusCode.NOT_FOUND
    update = pb.UpdateProjectRequest(project_id=project.id, name="Pwned")
    assert await _code(stub.UpdateProject(update, metadata=theirs.md)) == grpc.StatusCode.NOT_FOUND
    delete = pb.DeleteProjectRequest(project_id=project.id)
    assert await _code(stub.DeleteProject(delete, metadata=theirs.md)) == grpc.StatusCode.NOT_FOUND
    their_user = make_user(org=theirs.org)
    start = stub.StartSession(pb.StartSessionRequest(project_id=project.id), metadata=their_user.md)
    assert await _code(start) == grpc.StatusCode.NOT_FOUND
    assert list((await stub.ListProjects(pb.ListProjectsRequest(), metadata=theirs.md)).projects) == []
    # The same name is free in another organization.
    await stub.CreateProject(pb.CreateProjectRequest(name="Secret"), metadata=theirs.md)


async def test_project_names_and_bad_input(sessions_server: Server, make_user: UserFactory) -> None:
    stub = sessions_server.stub
    manager = make_user("manager")
    await stub.CreateProject(pb.CreateProjectRequest(name="Alpha"), metadata=manager.md)
    beta = (await stub.CreateProject(pb.CreateProjectRequest(name="Beta"), metadata=manager.md)).project
    duplicate = stub.CreateProject(pb.CreateProjectRequest(name="alpha"), metadata=manager.md)
    assert await _code(duplicate) == grpc.StatusCode.ALREADY_EXISTS
    rename = stub.UpdateProject(pb.UpdateProjectRequest(project_id=beta.id, name="ALPHA"), metadata=manager.md)
    assert await _code(rename) == grpc.StatusCode.ALREADY_EXISTS
    invalid = [
        (stub.CreateProject(pb.CreateProjectRequest(name="   "), metadata=manager.md), "name"),
        (stub.CreateProject(pb.CreateProjectRequest(name="x" * 201), metadata=manager.md), "name"),
        (
            stub.CreateProject(pb.CreateProjectRequest(name="ok", description="d" * 2001), metadata=manager.md),
            "description",
        ),
        (stub.GetProject(pb.GetProjectRequest(project_id="42"), metadata=manager.md), "project_id"),
        (stub.UpdateProject(pb.UpdateProjectRequest(project_id=beta.id, name=""), metadata=manager.md), "name"),
        (stub.UpdateProject(pb.UpdateProjectRequest(project_id="x", name="y"), metadata=manager.md), "project_id"),
        (stub.DeleteProject(pb.DeleteProjectRequest(project_id="x"), metadata=manager.md), "project_id"),
    ]
    for call, field in invalid:
        await invalid_argument(call, field)
    names = sorted(p.name for p in (await stub.ListProjects(pb.ListProjectsRequest(), metadata=manager.md)).projects)
    assert names == ["Alpha", "Beta"]  # nothing was created, renamed or deleted
    unknown = stub.UpdateProject(pb.UpdateProjectRequest(project_id=str(uuid.uuid4()), name="z"), metadata=manager.md)
    assert await _code(unknown) == grpc.StatusCode.NOT_FOUND
