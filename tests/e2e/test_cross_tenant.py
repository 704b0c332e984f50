"""Every id-taking route and RPC, called by organization A's admin with a real id of
organization B, through the whole mesh as processes: A gets what a missing id gets (404 /
NOT_FOUND on an object's own route), never B's data, and B is unchanged afterwards.

The lists are generated, so a new route or RPC cannot be forgotten: the gateway's
``/openapi.json`` (path parameters, top-level body fields and the query parameters named
in the summaries that end in ``id``/``Id``) and the request messages of every user-facing
gRPC service (fields ending in ``_id``) must each have an entry in the tables below.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import message_factory
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import workpulse
from tests.support import Mesh, TokenFactory
from workpulse.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
ID_NAME = re.compile(r"\b([a-z][A-Za-z]*(?:_id|Id))\b")
# Ids a client makes up (event and batch ids, connections, stream cursors), not objects of a tenant.
NOT_OBJECT_IDS = {"clientEventId", "client_event_id", "batch_id", "connection_id", "after_id"}


@dataclass(frozen=True)
class B:
    """Organization B's objects, all real."""

    org: str
    user: str  # an employee
    session: str  # the employee's active session, with activity, on a project
    project: str
    alert: str  # an INACTIVE_ALERT of the session, raised by the idle check

    def id_for(self, name: str) -> str:
        kind = re.sub(r"(_id|Id)$", "", name).lower()
        return {"organization": self.org, "user": self.user, "session": self.session}.get(kind) or {
            "project": self.project,
            "alert": self.alert,
        }[kind]

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.org, self.user, self.session, self.project, self.alert)


@dataclass(frozen=True)
class A:
    admin: str
    email: str
    org: str
    token: str
    invite_token: str  # an unused invite of A's

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


@dataclass(frozen=True)
class Tenants:
    a: A
    b: B


async def _sign_up(http: httpx.AsyncClient, **body: str) -> dict[str, Any]:
    email = f"x-{uuid.uuid4().hex[:10]}@example.com"
    reply = await http.post("/auth/register", json={"email": email, "password": PASSWORD, "name": "N", **body})
    assert reply.status_code == 201, reply.text
    found: dict[str, Any] = reply.json()
    return found


async def _ok(reply: httpx.Response) -> Any:
    assert reply.status_code in (200, 201), reply.text
    return reply.json()


def _event(at: datetime | None = None) -> dict[str, Any]:
    stamp = (at or datetime.now(UTC)).isoformat()
    return {"activityType": "active", "durationSeconds": 30, "timestamp": stamp, "clientEventId": uuid.uuid4().hex}


@pytest.fixture(scope="module")
async def tenants(mesh: Mesh, tokens: TokenFactory) -> Tenants:
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as http:
        a = await _sign_up(http, organization_name="A Corp")
        a_headers = {"authorization": f"Bearer {a['access_token']}"}
        a_invite = await _ok(
            await http.post("/invites", json={"email": "later@example.com", "role": "employee"}, headers=a_headers)
        )
        b = await _sign_up(http, organization_name="B Corp")
        b_headers = {"authorization": f"Bearer {b['access_token']}"}
        org = b["user"]["organization_id"]
        issued = await _ok(
            await http.post("/invites", json={"email": "worker@example.com", "role": "employee"}, headers=b_headers)
        )
        worker = await _sign_up(http, email=issued["email"], organization_id=org, invite_token=issued["token"])
        w_headers = {"authorization": f"Bearer {worker['access_token']}"}
        project = await _ok(await http.post("/projects", json={"name": "Secret"}, headers=b_headers))
        session = await _ok(await http.post("/sessions/start", json={"project_id": project["id"]}, headers=w_headers))
        await _ok(await http.post(f"/sessions/{session['id']}/activity", json=_event(), headers=w_headers))
        # B's idle threshold is a minute; the idle check runs as of three minutes from now.
        await _ok(await http.put("/alerts/settings", json={"idle_minutes": 1, "overtime_hours": 9}, headers=b_headers))
        async with grpc.aio.insecure_channel(mesh.address("scheduler")) as channel:
            as_of = Timestamp()
            as_of.FromDatetime(datetime.now(UTC) + timedelta(seconds=90))
            service = (("authorization", f"Bearer {tokens.service('ops')}"),)
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            run = await stub.RunJob(scheduler_pb2.RunJobRequest(name="idle_check", as_of=as_of), metadata=service)
            assert run.run.error == ""
        alerts = (await _ok(await http.get("/alerts", headers=b_headers)))["alerts"]
        alert = next(x["id"] for x in alerts if x["session_id"] == session["id"])
    return Tenants(
        A(a["user"]["id"], a["user"]["email"], a["user"]["organization_id"], a["access_token"], a_invite["token"]),
        B(org, worker["user"]["id"], session["id"], project["id"], alert),
    )


async def _state_of_b(owner: AsyncEngine, b: B, a: A) -> dict[str, Any]:
    """B's objects as stored, and whether A gained a session (a start on B's project)."""
    queries = {
        "session": "select status, end_time, total_active_seconds, total_idle_seconds, version, project_id::text "
        "from sessions.work_sessions where id = :session",
        "events": "select count(*), coalesce(sum(duration_seconds), 0) from ingest.activity_logs "
        "where organization_id = :org and session_id = :session",
        "project": "select name, description, updated_at, deleted_at from sessions.projects where id = :project",
        "user": "select email, name, role, status from auth.users where id = :user",
        "alert": "select acknowledged_by, acknowledged_at from scheduler.alerts where id = :alert",
        "a_sessions": "select count(*) from sessions.work_sessions where organization_id = :a_org",
    }
    params = {"org": b.org, "session": b.session, "project": b.project, "user": b.user, "alert": b.alert}
    async with owner.connect() as conn:
        return {
            name: [tuple(r) for r in await conn.execute(text(sql), {**params, "a_org": a.org})]
            for name, sql in queries.items()
        }


# -- REST: (method, route, id parameter) -> the request, given the id to send


Request = Callable[[str, Tenants], dict[str, Any]]
SPAN = {"startDate": "2026-01-01", "endDate": "2026-12-31"}
REST: dict[tuple[str, str, str], Request] = {
    ("GET", "/users/{user_id}", "user_id"): lambda i, t: {"url": f"/users/{i}"},
    ("GET", "/sessions/{session_id}", "session_id"): lambda i, t: {"url": f"/sessions/{i}"},
    ("POST", "/sessions/{session_id}/stop", "session_id"): lambda i, t: {"url": f"/sessions/{i}/stop", "json": {}},
    ("POST", "/sessions/{session_id}/activity", "session_id"): lambda i, t: {
        "url": f"/sessions/{i}/activity",
        "json": _event(),
    },
    ("POST", "/activity/batch", "sessionId"): lambda i, t: {
        "url": "/activity/batch",
        "json": {"sessionId": i, "events": [_event()]},
    },
    ("POST", "/sessions/start", "project_id"): lambda i, t: {"url": "/sessions/start", "json": {"project_id": i}},
    ("GET", "/projects/{project_id}", "project_id"): lambda i, t: {"url": f"/projects/{i}"},
    ("PUT", "/projects/{project_id}", "project_id"): lambda i, t: {"url": f"/projects/{i}", "json": {"name": "Mine"}},
    ("DELETE", "/projects/{project_id}", "project_id"): lambda i, t: {"url": f"/projects/{i}"},
    ("GET", "/reports/user/{user_id}", "user_id"): lambda i, t: {"url": f"/reports/user/{i}", "params": SPAN},
    ("POST", "/alerts/{alert_id}/acknowledge", "alert_id"): lambda i, t: {"url": f"/alerts/{i}/acknowledge"},
    ("GET", "/sessions", "user_id"): lambda i, t: {"url": "/sessions", "params": {"user_id": i}},
    ("GET", "/sessions", "project_id"): lambda i, t: {"url": "/sessions", "params": {"project_id": i}},
    ("GET", "/reports/daily", "userId"): lambda i, t: {"url": "/reports/daily", "params": {"userId": i}},
    ("GET", "/alerts", "userId"): lambda i, t: {"url": "/alerts", "params": {"userId": i}},
    ("GET", "/reports/export.csv", "userId"): lambda i, t: {
        "url": "/reports/export.csv",
        "params": {**SPAN, "userId": i},
    },
    # Public routes naming an organization: A's credentials and invite do not open B.
    ("POST", "/auth/login", "organization_id"): lambda i, t: {
        "url": "/auth/login",
        "json": {"email": t.a.email, "password": PASSWORD, "organization_id": i},
    },
    ("POST", "/auth/register", "organization_id"): lambda i, t: {
        "url": "/auth/register",
        "json": {
            "email": "later@example.com",
            "password": PASSWORD,
            "name": "N",
            "organization_id": i,
            "invite_token": t.a.invite_token,
        },
    },
}
# What A must get with B's id (and gets with a made-up one). List filters answer "none".
REST_STATUS = {("GET", "/sessions"): 200, ("GET", "/alerts"): 200, ("POST", "/auth/login"): 401}
REST_STATUS |= {("POST", "/auth/register"): 400}


def _id_parameters(document: dict[str, Any]) -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            names = set(re.findall(r"{(\w+)}", path)) | set(ID_NAME.findall(op.get("summary", "")))
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            names |= {p for p in body.get("properties", {}) if ID_NAME.fullmatch(p)}
            found |= {(method.upper(), path, n) for n in names - NOT_OBJECT_IDS}
    return found


def _answer(reply: httpx.Response, sent: str) -> tuple[int, str]:
    """What the caller learns, with the id they sent blanked out (to compare with a made-up id)."""
    body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else reply.text
    message = body.get("message", body) if isinstance(body, dict) else body
    if isinstance(message, str) and reply.headers.get("content-type", "").startswith("text/csv"):
        message = message.splitlines()[1:]  # the rows, not the header line
    return reply.status_code, str(message).replace(sent, "<id>")


async def test_every_id_taking_route_is_in_the_table(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    assert _id_parameters(document) == set(REST)


async def test_no_route_reaches_another_organizations_objects(
    http: httpx.AsyncClient, tenants: Tenants, owner_engine: AsyncEngine
) -> None:
    before = await _state_of_b(owner_engine, tenants.b, tenants.a)
    for (method, route, name), build in REST.items():
        real = tenants.b.id_for(name)
        made_up = str(uuid.uuid4())
        answers = []
        for sent in (real, made_up):
            reply = await http.request(method, headers=tenants.a.headers, **build(sent, tenants))
            answers.append(_answer(reply, sent))
            for theirs in tenants.b.ids:
                assert theirs == sent or theirs not in reply.text, (method, route, name, reply.text)
        expected = REST_STATUS.get((method, route), 404)
        assert answers[0][0] == expected, (method, route, name, answers[0])
        assert answers[0] == answers[1], (method, route, name)  # a foreign id looks exactly like a missing one
    assert await _state_of_b(owner_engine, tenants.b, tenants.a) == before


# -- gRPC: ("/package.Service/Method", field) -> the other fields of the request, and the answer


def _user_facing_methods() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for info in pkgutil.walk_packages(workpulse.__path__, "workpulse."):
        if info.name.endswith("_pb2"):
            for service in importlib.import_module(info.name).DESCRIPTOR.services_by_name.values():
                if "Reporting" not in service.name:  # service identities only: test_grpc_guards.py
                    found |= {f"/{service.full_name}/{m.name}": m for m in service.methods}
    return found


def _id_fields() -> set[tuple[str, str]]:
    return {
        (path, f.name)
        for path, method in _user_facing_methods().items()
        for f in method.input_type.fields
        if f.name.endswith("_id") and f.name not in NOT_OBJECT_IDS
    }


def _event_message() -> dict[str, Any]:
    at = Timestamp()
    at.FromDatetime(datetime.now(UTC))
    return {"activity_type": 1, "duration_seconds": 30, "timestamp": at, "client_event_id": uuid.uuid4().hex}


def _events() -> dict[str, Any]:
    return {"events": [_event_message()]}


RANGE = {"start_date": "2026-01-01", "end_date": "2026-12-31"}
AUTH, SESSIONS = "/workpulse.auth.v1.AuthService/", "/workpulse.sessions.v1.SessionsService/"
INGEST, REALTIME = "/workpulse.ingest.v1.IngestService/", "/workpulse.realtime.v1.RealtimeService/"
SCHEDULER = "/workpulse.scheduler.v1.SchedulerService/"
# (path, field) -> (other fields, given the tenants; the status A must get)
GRPC: dict[tuple[str, str], tuple[Callable[[Tenants], dict[str, Any]], str]] = {
    (AUTH + "GetUser", "user_id"): (lambda t: {}, "NOT_FOUND"),
    (AUTH + "LogIn", "organization_id"): (lambda t: {"email": t.a.email, "password": PASSWORD}, "UNAUTHENTICATED"),
    (AUTH + "RegisterWithInvite", "organization_id"): (
        lambda t: {"email": "later@example.com", "password": PASSWORD, "name": "N", "invite_token": t.a.invite_token},
        "INVALID_ARGUMENT",
    ),
    (SESSIONS + "StartSession", "project_id"): (lambda t: {}, "NOT_FOUND"),
    (SESSIONS + "StopSession", "session_id"): (lambda t: {}, "NOT_FOUND"),
    (SESSIONS + "GetSession", "session_id"): (lambda t: {}, "NOT_FOUND"),
    (SESSIONS + "GetSession", "organization_id"): (lambda t: {"session_id": t.b.session}, "NOT_FOUND"),
    (SESSIONS + "ListSessions", "user_id"): (lambda t: {}, "OK"),
    (SESSIONS + "ListSessions", "project_id"): (lambda t: {}, "OK"),
    (SESSIONS + "ApplyActivity", "organization_id"): (
        lambda t: {"session_id": t.b.session, "idempotency_key": uuid.uuid4().hex, "active_seconds": 30},
        "PERMISSION_DENIED",
    ),
    (SESSIONS + "ApplyActivity", "session_id"): (
        lambda t: {"organization_id": t.b.org, "idempotency_key": uuid.uuid4().hex, "active_seconds": 30},
        "PERMISSION_DENIED",
    ),
    (SESSIONS + "GetProject", "project_id"): (lambda t: {}, "NOT_FOUND"),
    (SESSIONS + "UpdateProject", "project_id"): (lambda t: {"name": "Mine"}, "NOT_FOUND"),
    (SESSIONS + "DeleteProject", "project_id"): (lambda t: {}, "NOT_FOUND"),
    (INGEST + "RecordActivity", "session_id"): (lambda t: {"event": _event_message()}, "NOT_FOUND"),
    (INGEST + "RecordActivityBatch", "session_id"): (lambda t: _events(), "NOT_FOUND"),
    (INGEST + "StreamActivity", "session_id"): (lambda t: {"batch_id": "probe", **_events()}, "NOT_FOUND"),
    # Service identities only (the sessions service, as it stops a session): nobody else.
    (INGEST + "CloseSession", "organization_id"): (lambda t: {"session_id": t.b.session}, "PERMISSION_DENIED"),
    # A user's own organization and self, whatever the request names (service identities only).
    (INGEST + "GetAgentPolicy", "organization_id"): (lambda t: {}, "OK"),
    (INGEST + "GetAgentPolicy", "user_id"): (lambda t: {}, "OK"),
    (INGEST + "GetOrganizationAgentPolicy", "organization_id"): (lambda t: {}, "OK"),
    (INGEST + "CloseSession", "session_id"): (lambda t: {"organization_id": t.b.org}, "PERMISSION_DENIED"),
    # Presence leases: users hold them only for themselves (whoever the other user is).
    (REALTIME + "Heartbeat", "user_id"): (lambda t: {"connection_id": "probe"}, "PERMISSION_DENIED"),
    (REALTIME + "Heartbeat", "organization_id"): (lambda t: {"connection_id": "probe"}, "OK"),
    (REALTIME + "Disconnect", "user_id"): (lambda t: {"connection_id": "probe"}, "PERMISSION_DENIED"),
    (REALTIME + "Disconnect", "organization_id"): (lambda t: {"connection_id": "probe"}, "OK"),
    (SCHEDULER + "GetDailySummary", "user_id"): (lambda t: {}, "NOT_FOUND"),
    (SCHEDULER + "GetUserReport", "user_id"): (lambda t: dict(RANGE), "NOT_FOUND"),
    (SCHEDULER + "ListAlerts", "user_id"): (lambda t: {}, "OK"),
    (SCHEDULER + "AcknowledgeAlert", "alert_id"): (lambda t: {}, "NOT_FOUND"),
    (SCHEDULER + "ExportSummaries", "user_id"): (lambda t: dict(RANGE), "NOT_FOUND"),
}


_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


async def _rpc(mesh: Mesh, path: str, request: Message, md: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """The status and what came back (replies as text), for any kind of RPC."""
    method = _user_facing_methods()[path]
    output = message_factory.GetMessageClass(method.output_type)
    kind = ("stream" if method.client_streaming else "unary") + "_" + ("stream" if method.server_streaming else "unary")
    async with grpc.aio.insecure_channel(mesh.address(path.split(".")[1])) as channel:
        call = getattr(channel, kind)(path, type(request).SerializeToString, output.FromString)
        try:
            if method.client_streaming:
                replies = [r async for r in call(iter([request]), metadata=md)]
            elif method.server_streaming:
                replies = [r async for r in call(request, metadata=md)]
            else:
                replies = [await call(request, metadata=md)]
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, exc.details() or ""
    # A stream's acknowledgement carries the batch's status.
    code = next((_CODE_NAMES[c] for r in replies if (c := getattr(r, "status_code", 0))), "OK")
    return code, " ".join(str(r) for r in replies)


def test_every_id_taking_rpc_is_in_the_table() -> None:
    assert _id_fields() == set(GRPC)


async def test_no_rpc_reaches_another_organizations_objects(
    mesh: Mesh, tenants: Tenants, owner_engine: AsyncEngine
) -> None:
    before = await _state_of_b(owner_engine, tenants.b, tenants.a)
    for (path, field), (others, expected) in GRPC.items():
        request_class = message_factory.GetMessageClass(_user_facing_methods()[path].input_type)
        answers = []
        for sent in (tenants.b.id_for(field), str(uuid.uuid4())):
            code, said = await _rpc(mesh, path, request_class(**others(tenants), **{field: sent}), tenants.a.md)
            for theirs in tenants.b.ids:
                assert theirs == sent or theirs not in said, (path, field, said)
            answers.append((code, said.replace(sent, "<id>")))
        assert answers[0][0] == expected, (path, field, answers[0])
        assert answers[0] == answers[1], (path, field)
    assert await _state_of_b(owner_engine, tenants.b, tenants.a) == before
