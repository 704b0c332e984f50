"""The same journey against the real processes (`workpulse up`'s mesh): auth and the gateway
as separate processes on real ports, configured only by environment variables."""

from __future__ import annotations

import grpc
import httpx

from tests.auth.conftest import PASSWORD, unique_email
from tests.support import Mesh
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc


async def test_sign_up_log_in_me_and_invite_across_processes(http: httpx.AsyncClient, mesh: Mesh) -> None:
    email = unique_email("mesh")
    signed = await http.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": "Mesh", "organization_name": "Mesh Co"}
    )
    assert signed.status_code == 201, signed.text
    org = signed.json()["user"]["organization_id"]
    logged = await http.post("/auth/login", json={"email": email, "password": PASSWORD, "organization_id": org})
    assert logged.status_code == 200, logged.text
    headers = {"authorization": f"Bearer {logged.json()['access_token']}"}
    me = await http.get("/me", headers=headers)
    assert me.json()["email"] == email
    invited = await http.post("/invites", json={"email": unique_email(), "role": "employee"}, headers=headers)
    assert invited.status_code == 201

    async with grpc.aio.insecure_channel(mesh.address("auth")) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        direct = await stub.GetUser(auth_pb2.GetUserRequest(), metadata=(("authorization", headers["authorization"]),))
    assert direct.user.email == email
