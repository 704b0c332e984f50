"""Project routes: managers and admins create, update and delete; everyone in the
organization lists and reads. Deleting a project keeps its sessions."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from gateway.callers import MANAGING
from gateway.openapi import documented
from gateway.routes.sessions import sessions_stub
from gateway.rpc import call, parse_body
from gateway.wire import Body, iso, path_id
from workpulse.sessions.v1 import sessions_pb2


class CreateProjectBody(Body):
    name: str = Field(description="1..200 characters, unique among the organization's projects")
    description: str | None = Field(None, description="at most 2000 characters")


class UpdateProjectBody(Body):
    name: str | None = None
    description: str | None = None


def project_json(project: sessions_pb2.Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "organization_id": project.organization_id,
        "name": project.name,
        "description": project.description,
        "created_at": iso(project.created_at),
        "updated_at": iso(project.updated_at),
    }


@documented(
    "Create a project (managers, admins)",
    roles=MANAGING,
    body=CreateProjectBody,
    response="Project",
    status=201,
    errors=(400, 401, 403, 409, 413, 415, 429, 503),
)
async def create_project(request: Request) -> JSONResponse:
    body = await parse_body(request, CreateProjectBody)
    message = sessions_pb2.CreateProjectRequest(name=body.name, description=body.description or "")
    reply = await call(request, sessions_stub(request).CreateProject, message)
    return JSONResponse(project_json(reply.project), status_code=201)


@documented("The organization's projects", response="Project[]", errors=(401, 429, 503))
async def list_projects(request: Request) -> JSONResponse:
    reply = await call(request, sessions_stub(request).ListProjects, sessions_pb2.ListProjectsRequest())
    return JSONResponse([project_json(p) for p in reply.projects])


@documented("One project of the organization", response="Project", errors=(400, 401, 404, 429, 503))
async def get_project(request: Request) -> JSONResponse:
    message = sessions_pb2.GetProjectRequest(project_id=path_id(request, "project_id"))
    reply = await call(request, sessions_stub(request).GetProject, message)
    return JSONResponse(project_json(reply.project))


@documented(
    "Rename or describe a project (managers, admins)",
    roles=MANAGING,
    body=UpdateProjectBody,
    response="Project",
    errors=(400, 401, 403, 404, 409, 413, 415, 429, 503),
)
async def update_project(request: Request) -> JSONResponse:
    project_id = path_id(request, "project_id")
    body = await parse_body(request, UpdateProjectBody)
    message = sessions_pb2.UpdateProjectRequest(project_id=project_id)
    if body.name is not None:
        message.name = body.name
    if body.description is not None:
        message.description = body.description
    reply = await call(request, sessions_stub(request).UpdateProject, message)
    return JSONResponse(project_json(reply.project))


@documented(
    "Delete a project (managers, admins); its sessions are kept",
    roles=MANAGING,
    response="ProjectDeleted",
    errors=(400, 401, 403, 404, 429, 503),
)
async def delete_project(request: Request) -> JSONResponse:
    project_id = path_id(request, "project_id")
    await call(request, sessions_stub(request).DeleteProject, sessions_pb2.DeleteProjectRequest(project_id=project_id))
    return JSONResponse({"id": project_id, "message": "project deleted"})


routes: list[BaseRoute] = [
    Route("/projects", create_project, methods=["POST"]),
    Route("/projects", list_projects, methods=["GET"]),
    Route("/projects/{project_id}", get_project, methods=["GET"]),
    Route("/projects/{project_id}", update_project, methods=["PUT"]),
    Route("/projects/{project_id}", delete_project, methods=["DELETE"]),
]
