"""Sign-up → log-in → the caller's own user, through the gateway and through gRPC directly."""

from __future__ import annotations

import json

import grpc
import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.conftest import PASSWORD, sign_up, unique_email
from tests.support import eventually
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc
from workpulse.redisconn import Keys, events_stream

USER_FIELDS = {
    "id",
    "email",
    "name",
    "role",
    "organization_id",
    "status",
    "timezone",
    "created_at",
    "last_seen",
    "workspace",
}


async def test_sign_up_log_in_and_me_through_the_gateway(gateway: httpx.AsyncClient) -> None:
    email = unique_email("Founder").upper()
    signed = await gateway.post(
        "/auth/register",
        json={"email": email, "password": PASSWORD, "name": "Grace", "organization_name": "Hopper Inc"},
    )
    assert signed.status_code == 201, signed.text
    body = signed.json()
    assert set(body) >= {"user", "access_token", "refresh_token"}
    user = body["user"]
    assert set(user) == USER_FIELDS
    assert user["email"] == email.lower()
    assert user["role"] == "admin"
    assert user["status"] == "active"
    assert user["created_at"].endswith("Z")

    logged = await gateway.post(
        "/auth/login", json={"email": email, "password": PASSWORD, "organization_id": user["organization_id"]}
    )
    assert logged.status_code == 200, logged.text
    assert logged.json()["user"]["id"] == user["id"]
    assert logged.json()["user"]["last_seen"] is not None

    me = await gateway.get("/me", headers={"authorization": f"Bearer {logged.json()['access_token']}"})
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user["id"]
    assert me.json()["organization_id"] == user["organization_id"]


async def test_sign_up_log_in_and_get_user_over_grpc(stub: auth_pb2_grpc.AuthServiceAsyncStub) -> None:
    email = unique_email()
    signed = await stub.SignUp(
        auth_pb2.SignUpRequest(
            email=email, password=PASSWORD, name="Lin", organization_name="Lin Co", timezone="Europe/Paris"
        )
    )
    assert signed.organization.timezone == "Europe/Paris"
    assert signed.user.role == auth_pb2.ROLE_ADMIN
    assert signed.tokens.expires_in == 900

    logged = await stub.LogIn(
        auth_pb2.LogInRequest(email=email, password=PASSWORD, organization_id=signed.user.organization_id)
    )
    assert logged.user.id == signed.user.id
    assert logged.user.HasField("last_seen")

    me = await stub.GetUser(
        auth_pb2.GetUserRequest(), metadata=(("authorization", f"Bearer {logged.tokens.access_token}"),)
    )
    assert me.user.id == signed.user.id
    assert me.user.email == email


async def test_access_token_claims_and_the_published_key_set(stub: auth_pb2_grpc.AuthServiceAsyncStub) -> None:
    admin = await sign_up(stub)
    jwks = json.loads((await stub.GetPublicKeys(auth_pb2.GetPublicKeysRequest())).jwks_json)
    header = jwt.get_unverified_header(admin.access_token)
    assert header["alg"] == "EdDSA"
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(admin.access_token, key, algorithms=["EdDSA"], audience="workpulse", issuer="workpulse-auth")
    assert claims["sub"] == admin.id
    assert claims["org"] == admin.org
    assert claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["jti"]


@pytest.mark.parametrize("case", ["unknown email", "wrong password", "unknown organization"])
async def test_bad_credentials_get_one_answer(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, case: str
) -> None:
    admin = await sign_up(stub)
    body = {"email": admin.email, "password": PASSWORD, "organization_id": admin.org}
    if case == "unknown email":
        body["email"] = unique_email()
    elif case == "wrong password":
        body["password"] = "not the password"
    else:
        body["organization_id"] = "00000000-0000-4000-8000-000000000000"
    reply = await gateway.post("/auth/login", json=body)
    assert reply.status_code == 401
    assert reply.json()["message"] == "invalid email, password or organization"
    assert set(reply.json()) == {"statusCode", "message", "timestamp", "path"}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LogIn(auth_pb2.LogInRequest(**body))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == "invalid email, password or organization"


async def test_passwords_are_stored_as_bcrypt_hashes(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    admin = await sign_up(stub)
    async with owner_engine.connect() as conn:
        stored = (
            await conn.execute(text("select password_hash from auth.users where id = :id"), {"id": admin.id})
        ).scalar_one()
    assert stored.startswith("$2b$04$")  # BCRYPT_ROUNDS=4 in tests; 12 by default
    assert PASSWORD not in stored


async def test_sign_up_publishes_organization_and_user_events(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, redis_client: object, redis_prefix: str
) -> None:
    admin = await sign_up(stub)
    stream = events_stream(Keys(redis_prefix))

    async def both_events() -> list[dict[str, str]] | None:
        entries = await redis_client.xrange(stream)  # type: ignore[attr-defined]
        found = [fields for _, fields in entries if fields["org"] == admin.org]
        return found if len(found) >= 2 else None

    found = await eventually(both_events, what="the organization's two events on the stream")
    types = [e["type"] for e in found]
    assert types == ["ORGANIZATION_CREATED", "USER_REGISTERED"]
    assert all(e["service"] == "auth" for e in found)
    registered = json.loads(found[1]["data"])
    assert registered["userId"] == admin.id
    assert registered["role"] == "admin"
    assert "password" not in found[1]["data"]
