"""Single use holds under concurrency: an invite redeemed by racing requests admits one
user; a refresh token presented twice at once rotates once."""

from __future__ import annotations

import asyncio

import httpx

from tests.auth.conftest import PASSWORD, Organization, invite
from workpulse.auth.v1 import auth_pb2_grpc


async def test_racing_redemptions_of_one_invite_admit_one_user(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, org: Organization
) -> None:
    issued = await invite(stub, org.admin, "employee")
    body = {
        "email": issued.email,
        "password": PASSWORD,
        "name": "Racer",
        "organization_id": org.admin.org,
        "invite_token": issued.token,
    }
    replies = await asyncio.gather(*(gateway.post("/auth/register", json=body) for _ in range(8)))
    codes = sorted(r.status_code for r in replies)
    assert codes.count(201) == 1, [r.text for r in replies]
    assert set(codes) <= {201, 400, 409}
    listed = await gateway.get("/users", headers=org.admin.headers)
    assert sum(u["email"] == issued.email for u in listed.json()) == 1


async def test_racing_refreshes_of_one_token_rotate_it_once(gateway: httpx.AsyncClient, org: Organization) -> None:
    replies = await asyncio.gather(
        *(gateway.post("/auth/refresh", json={"refresh_token": org.manager.refresh_token}) for _ in range(4))
    )
    codes = sorted(r.status_code for r in replies)
    assert codes == [200, 401, 401, 401], [r.text for r in replies]
    # The losers presented a spent token: reuse, so the family (including the winner's new token) is revoked.
    winner = next(r for r in replies if r.status_code == 200).json()
    again = await gateway.post("/auth/refresh", json={"refresh_token": winner["refresh_token"]})
    assert again.status_code == 401


async def test_the_openapi_document_lists_the_identity_routes(gateway: httpx.AsyncClient) -> None:
    paths = (await gateway.get("/openapi.json")).json()["paths"]
    for path in ("/auth/register", "/auth/login", "/auth/refresh", "/auth/logout", "/me", "/users", "/invites"):
        assert path in paths, path
    schema = paths["/auth/register"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"email", "password", "name"} <= set(schema["required"])
