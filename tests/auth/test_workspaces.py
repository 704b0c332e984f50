"""Workspace names (issue 10), through the gateway and over gRPC on a real database: given
or derived at sign-up (collisions get suffixes, a taken chosen name is 409), carried by
every reply that names the organization, accepted by log-in in any letter case with the
same 401 for a wrong workspace as for a wrong email or password, and renamed by admins."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from tests.auth.conftest import (
    PASSWORD,
    AuthServer,
    GatewayClient,
    Member,
    Organization,
    invite,
    sign_up,
    start_auth,
    unique_email,
)
from tests.support import eventually
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc
from workpulse.redisconn import Keys, events_stream

BAD_CREDENTIALS = "invalid email, password or organization"


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _unique_workspace() -> str:
    return f"ws-{_tag()}"


async def _register(gateway: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    body = {"email": unique_email(), "password": PASSWORD, "name": "Ada", "organization_name": "Acme", **fields}
    return await gateway.post("/auth/register", json=body)


async def _workspace_of(stub: auth_pb2_grpc.AuthServiceAsyncStub, member: Member) -> str:
    me = await stub.GetUser(auth_pb2.GetUserRequest(), metadata=member.md)
    return me.user.workspace


# --- sign-up ------------------------------------------------------------------------------


async def test_sign_up_derives_the_workspace_and_suffixes_it_when_taken(gateway: httpx.AsyncClient) -> None:
    tag = _tag()
    found = []
    for _ in range(3):
        reply = await _register(gateway, organization_name=f"Café Zürich {tag} & Co")
        assert reply.status_code == 201, reply.text
        found.append(reply.json()["user"]["workspace"])
    base = f"cafe-zurich-{tag}-and-co"
    assert found == [base, f"{base}-2", f"{base}-3"]


async def test_concurrent_sign_ups_of_one_name_get_distinct_workspaces(
    stub: auth_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    name = f"Race {_tag()}"
    replies = await asyncio.gather(
        *(
            stub.SignUp(
                auth_pb2.SignUpRequest(email=unique_email(), password=PASSWORD, name="R", organization_name=name)
            )
            for _ in range(5)
        )
    )
    base = name.lower().replace(" ", "-")
    assert {r.organization.workspace for r in replies} == {base, *(f"{base}-{n}" for n in range(2, 6))}


async def test_a_chosen_workspace_is_kept_lowercase_and_carried_everywhere(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub
) -> None:
    chosen = _unique_workspace()
    signed = await _register(gateway, workspace=f"  {chosen.upper()} ")
    assert signed.status_code == 201, signed.text
    body = signed.json()
    assert body["user"]["workspace"] == chosen
    headers = {"authorization": f"Bearer {body['access_token']}"}

    me = await gateway.get("/me", headers=headers)
    assert me.json()["workspace"] == chosen
    listed = await gateway.get("/users", headers=headers)
    assert [u["workspace"] for u in listed.json()] == [chosen]
    refreshed = await gateway.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.json()["user"]["workspace"] == chosen
    invited = await gateway.post("/invites", json={"email": unique_email(), "role": "employee"}, headers=headers)
    assert invited.status_code == 201, invited.text
    assert invited.json()["workspace"] == chosen

    grpc_signed = await stub.SignUp(
        auth_pb2.SignUpRequest(
            email=unique_email(), password=PASSWORD, name="G", organization_name="Whatever", workspace=chosen + "-g"
        )
    )
    assert grpc_signed.organization.workspace == grpc_signed.user.workspace == chosen + "-g"


async def test_a_joined_member_sees_the_workspace_too(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    workspace = await _workspace_of(stub, org.admin)
    issued = await invite(stub, org.admin, "employee")
    assert issued.workspace == workspace
    joined = await gateway.post(
        "/auth/register",
        json={
            "email": issued.email,
            "password": PASSWORD,
            "name": "Joiner",
            "organization_id": org.admin.org,
            "invite_token": issued.token,
        },
    )
    assert joined.status_code == 201, joined.text
    assert joined.json()["user"]["workspace"] == workspace


async def test_a_chosen_workspace_that_is_taken_is_409_in_any_letter_case(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub
) -> None:
    chosen = _unique_workspace()
    assert (await _register(gateway, workspace=chosen)).status_code == 201
    email = unique_email()
    taken = await _register(gateway, email=email, workspace=chosen.upper())
    assert taken.status_code == 409
    assert taken.json()["message"] == "workspace: already taken"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.SignUp(
            auth_pb2.SignUpRequest(
                email=unique_email(), password=PASSWORD, name="A", organization_name="A", workspace=chosen
            )
        )
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # Nothing of the refused sign-up was kept: the same person signs up under a free name.
    retried = await _register(gateway, email=email, workspace=chosen + "-2")
    assert retried.status_code == 201, retried.text


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"workspace": "ab"}, "workspace:"),
        ({"workspace": "9lives"}, "workspace:"),
        ({"workspace": "acme corp"}, "workspace:"),
        ({"workspace": "acme_corp"}, "workspace:"),
        ({"workspace": "ácme"}, "workspace:"),
        ({"workspace": "a" * 64}, "workspace:"),
        ({"workspace": ""}, "workspace:"),
        ({"workspace": "   "}, "workspace:"),
        ({"workspace": 7}, "workspace:"),
    ],
)
async def test_an_invalid_chosen_workspace_is_400_naming_it(
    gateway: httpx.AsyncClient, fields: dict[str, object], field: str
) -> None:
    reply = await _register(gateway, **fields)
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"].startswith(field), reply.json()


async def test_an_invalid_workspace_over_grpc_is_invalid_argument(stub: auth_pb2_grpc.AuthServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.SignUp(
            auth_pb2.SignUpRequest(
                email=unique_email(), password=PASSWORD, name="A", organization_name="A", workspace="no--way"
            )
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("workspace:")


async def test_joining_takes_no_workspace(gateway: httpx.AsyncClient, org: Organization) -> None:
    reply = await gateway.post(
        "/auth/register",
        json={
            "email": unique_email(),
            "password": PASSWORD,
            "name": "J",
            "organization_id": org.admin.org,
            "invite_token": "t",
            "workspace": "mine",
        },
    )
    assert reply.status_code == 400
    assert reply.json()["message"].startswith("workspace:")


async def test_organization_created_event_carries_the_workspace(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, redis_client: object, redis_prefix: str
) -> None:
    chosen = _unique_workspace()
    admin = await sign_up(stub, workspace=chosen)

    async def created() -> dict[str, Any] | None:
        entries = await redis_client.xrange(events_stream(Keys(redis_prefix)))  # type: ignore[attr-defined]
        found = [f for _, f in entries if f["org"] == admin.org and f["type"] == "ORGANIZATION_CREATED"]
        return json.loads(found[0]["data"]) if found else None

    data = await eventually(created, what="ORGANIZATION_CREATED")
    assert data["workspace"] == chosen


# --- log-in -------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", [str.lower, str.upper, lambda w: f" {w.title()} "])
async def test_log_in_with_the_workspace_in_any_letter_case(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, spelling: Any
) -> None:
    chosen = _unique_workspace()
    admin = await sign_up(stub, workspace=chosen)
    reply = await gateway.post(
        "/auth/login", json={"email": admin.email, "password": PASSWORD, "organization": spelling(chosen)}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["user"]["id"] == admin.id
    assert reply.json()["user"]["organization_id"] == admin.org
    assert reply.json()["user"]["workspace"] == chosen

    logged = await stub.LogIn(
        auth_pb2.LogInRequest(email=admin.email, password=PASSWORD, organization=spelling(chosen))
    )
    assert logged.user.id == admin.id
    assert logged.user.workspace == chosen
    # The organization id still works, and its replies carry the workspace as well.
    by_id = await gateway.post(
        "/auth/login", json={"email": admin.email, "password": PASSWORD, "organization_id": admin.org}
    )
    assert by_id.json()["user"]["workspace"] == chosen


@pytest.mark.parametrize(
    ("organization", "message"),
    [
        ({"organization_id": "00000000-0000-4000-8000-000000000000", "organization": "acme"}, "organization:"),
        ({"organization_id": "", "organization": "acme"}, "organization:"),
        ({}, "organization_id:"),
        ({"organization": ""}, "organization_id:"),
        ({"organization": "not a workspace!"}, "organization:"),
        ({"organization": 5}, "organization:"),
    ],
)
async def test_log_in_needs_exactly_one_well_formed_organization(
    gateway: httpx.AsyncClient, organization: dict[str, object], message: str
) -> None:
    reply = await gateway.post("/auth/login", json={"email": "a@example.com", "password": PASSWORD, **organization})
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"].startswith(message), reply.json()


async def test_log_in_with_both_over_grpc_is_invalid_argument(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    workspace = await _workspace_of(stub, org.admin)
    for request in (
        auth_pb2.LogInRequest(
            email=org.admin.email, password=PASSWORD, organization_id=org.admin.org, organization=workspace
        ),
        auth_pb2.LogInRequest(email=org.admin.email, password=PASSWORD),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.LogIn(request)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_wrong_workspace_email_or_password_get_the_same_401(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    workspace = await _workspace_of(stub, org.admin)
    # Another organization's admin exists under another workspace: its name is no key to this one.
    other = await sign_up(stub)
    right = {"email": org.admin.email, "password": PASSWORD, "organization": workspace}
    cases = {
        "unknown workspace": {**right, "organization": _unique_workspace()},
        "another organization's workspace": {**right, "organization": await _workspace_of(stub, other)},
        "unknown email": {**right, "email": unique_email()},
        "wrong password": {**right, "password": "not the password"},
        "unknown organization id": {
            "email": org.admin.email,
            "password": PASSWORD,
            "organization_id": "00000000-0000-4000-8000-000000000000",
        },
    }
    bodies = {}
    for case, body in cases.items():
        reply = await gateway.post("/auth/login", json=body)
        assert reply.status_code == 401, (case, reply.text)
        bodies[case] = {k: v for k, v in reply.json().items() if k != "timestamp"}
        assert set(reply.json()) == {"statusCode", "message", "timestamp", "path"}
    assert all(b == {"statusCode": 401, "message": BAD_CREDENTIALS, "path": "/auth/login"} for b in bodies.values())
    for case in ("unknown workspace", "unknown email", "wrong password"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.LogIn(auth_pb2.LogInRequest(**cases[case]))
        assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, BAD_CREDENTIALS)
    assert (await gateway.post("/auth/login", json=right)).status_code == 200


# --- log-in limits ------------------------------------------------------------------------

PER_ACCOUNT = 3
PER_ADDRESS = 6


@pytest.fixture(scope="module")
async def limited_server(settings_env: dict[str, str]) -> AsyncIterator[AuthServer]:
    server, stop = await start_auth(
        login_attempts_per_account=PER_ACCOUNT, login_attempts_per_address=PER_ADDRESS, login_window_seconds=600
    )
    yield server
    await stop()


def _address() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


async def test_one_account_counter_whether_the_organization_is_named_by_workspace_or_id(
    limited_server: AuthServer,
) -> None:
    chosen = _unique_workspace()
    member = await sign_up(limited_server.stub, workspace=chosen)
    async with GatewayClient(limited_server.address, _address()) as client:
        for n in range(PER_ACCOUNT):
            # Alternating the two ways of naming the organization does not reset anything.
            where = {"organization": chosen.upper()} if n % 2 else {"organization_id": member.org}
            wrong = await client.post("/auth/login", json={"email": member.email, "password": "wrong!!!!", **where})
            assert wrong.status_code == 401
        for where in ({"organization": chosen}, {"organization_id": member.org}):
            blocked = await client.post("/auth/login", json={"email": member.email, "password": PASSWORD, **where})
            assert blocked.status_code == 429
            assert int(blocked.headers["retry-after"]) > 0


async def test_an_unknown_workspace_runs_into_the_same_429_as_a_real_one(limited_server: AuthServer) -> None:
    member = await sign_up(limited_server.stub, workspace=_unique_workspace())
    real = await _workspace_of(limited_server.stub, member)
    statuses: dict[str, list[int]] = {}
    for workspace in (real, _unique_workspace()):
        async with GatewayClient(limited_server.address, _address()) as client:
            body = {"email": member.email, "password": "wrong!!!!", "organization": workspace}
            statuses[workspace] = [(await client.post("/auth/login", json=body)).status_code for _ in range(4)]
    assert list(statuses.values()) == [[401, 401, 401, 429]] * 2


async def test_log_ins_by_workspace_count_against_the_address(limited_server: AuthServer) -> None:
    member = await sign_up(limited_server.stub, workspace=_unique_workspace())
    async with GatewayClient(limited_server.address, _address()) as client:
        for _ in range(PER_ADDRESS):
            body = {"email": member.email, "password": PASSWORD, "organization": _unique_workspace()}
            assert (await client.post("/auth/login", json=body)).status_code == 401
        right = {"email": member.email, "password": PASSWORD, "organization_id": member.org}
        assert (await client.post("/auth/login", json=right)).status_code == 429


# --- renaming -----------------------------------------------------------------------------


async def test_an_admin_renames_the_workspace(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    old = await _workspace_of(stub, org.admin)
    new = _unique_workspace()
    reply = await gateway.put("/organization", json={"workspace": new.upper()}, headers=org.admin.headers)
    assert reply.status_code == 200, reply.text
    renamed = reply.json()
    assert renamed["workspace"] == new
    assert renamed["id"] == org.admin.org
    assert set(renamed) == {"id", "name", "workspace", "plan_type", "timezone", "created_at"}

    # Everyone of the organization sees it; log-in takes the new name and no longer the old one.
    me = await gateway.get("/me", headers=org.employee.headers)
    assert me.json()["workspace"] == new
    by_new = {"email": org.employee.email, "password": PASSWORD, "organization": new}
    assert (await gateway.post("/auth/login", json=by_new)).status_code == 200
    by_old = await gateway.post("/auth/login", json={**by_new, "organization": old})
    assert by_old.status_code == 401
    assert by_old.json()["message"] == BAD_CREDENTIALS
    # The old name is free again for anyone.
    assert (await _register(gateway, workspace=old)).status_code == 201

    again = await stub.RenameWorkspace(auth_pb2.RenameWorkspaceRequest(workspace=new + "-x"), metadata=org.admin.md)
    assert again.organization.workspace == new + "-x"
    assert again.organization.id == org.admin.org
    # Renaming to its own name changes nothing and is no conflict.
    same = await gateway.put("/organization", json={"workspace": new + "-x"}, headers=org.admin.headers)
    assert same.status_code == 200


@pytest.mark.parametrize("role", ["manager", "employee"])
async def test_only_admins_rename(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization, role: str
) -> None:
    member: Member = getattr(org, role)
    before = await _workspace_of(stub, org.admin)
    reply = await gateway.put("/organization", json={"workspace": _unique_workspace()}, headers=member.headers)
    assert reply.status_code == 403
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.RenameWorkspace(auth_pb2.RenameWorkspaceRequest(workspace=_unique_workspace()), metadata=member.md)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await _workspace_of(stub, org.admin) == before


async def test_renaming_to_a_taken_workspace_is_409(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    before = await _workspace_of(stub, org.admin)
    taken = await _workspace_of(stub, await sign_up(stub))
    reply = await gateway.put("/organization", json={"workspace": taken.upper()}, headers=org.admin.headers)
    assert reply.status_code == 409
    assert reply.json()["message"] == "workspace: already taken"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.RenameWorkspace(auth_pb2.RenameWorkspaceRequest(workspace=taken), metadata=org.admin.md)
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert await _workspace_of(stub, org.admin) == before


@pytest.mark.parametrize("body", [{"workspace": "x"}, {"workspace": "bad name"}, {"workspace": 3}, {}])
async def test_renaming_to_an_invalid_workspace_is_400(
    gateway: httpx.AsyncClient, org: Organization, body: dict[str, object]
) -> None:
    reply = await gateway.put("/organization", json=body, headers=org.admin.headers)
    assert reply.status_code == 400
    assert reply.json()["message"].startswith("workspace:")


async def test_renaming_needs_a_token(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.put("/organization", json={"workspace": _unique_workspace()})).status_code == 401
