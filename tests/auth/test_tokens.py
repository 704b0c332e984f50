"""Forged, expired and misdirected tokens are refused by the gateway (401) and by the auth
service called directly (UNAUTHENTICATED); refresh tokens rotate, and a replayed one
revokes its whole family; log-out revokes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.conftest import Member, sign_up
from tests.support import TokenFactory
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc
from workpulse.identity import key_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(member: Member, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "workpulse-auth",
        "aud": "workpulse",
        "sub": member.id,
        "org": member.org,
        "role": "admin",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return claims


def alg_none(member: Member, tokens: TokenFactory) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": tokens.kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(member)).encode())}."


def wrong_key(member: Member, tokens: TokenFactory) -> str:
    # A key of the attacker's own, claiming the real key's id.
    return jwt.encode(_claims(member), Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": tokens.kid})


def hs256_with_public_key(member: Member, tokens: TokenFactory) -> str:
    # HS/EdDSA confusion: an HMAC "signed" with the public key a verifier might feed to HS256.
    public_pem = tokens.access_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": tokens.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(member)).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def expired(member: Member, tokens: TokenFactory) -> str:
    return tokens.user(org=member.org, sub=member.id, role="admin", ttl=-60)


def wrong_audience(member: Member, tokens: TokenFactory) -> str:
    return tokens.user(org=member.org, sub=member.id, role="admin", aud="someone-else")


def wrong_issuer(member: Member, tokens: TokenFactory) -> str:
    return tokens.user(org=member.org, sub=member.id, role="admin", iss="evil-issuer")


def service_typ_with_access_key(member: Member, tokens: TokenFactory) -> str:
    # A "service identity" minted with the access key: service identities have their own key.
    claims = _claims(member, iss="workpulse-mesh", role="service", sub="service:evil")
    return jwt.encode(claims, tokens.access_key, algorithm="EdDSA", headers={"typ": "service", "kid": tokens.kid})


def unknown_role(member: Member, tokens: TokenFactory) -> str:
    return tokens.user(org=member.org, sub=member.id, role="superuser")


def garbage(member: Member, tokens: TokenFactory) -> str:
    return "not-a-jwt"


ATTACKS: list[Callable[[Member, TokenFactory], str]] = [
    alg_none,
    wrong_key,
    hs256_with_public_key,
    expired,
    wrong_audience,
    wrong_issuer,
    service_typ_with_access_key,
    unknown_role,
    garbage,
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
async def test_forged_tokens_are_refused_by_gateway_and_service(
    gateway: httpx.AsyncClient,
    stub: auth_pb2_grpc.AuthServiceAsyncStub,
    tokens: TokenFactory,
    attack: Callable[[Member, TokenFactory], str],
) -> None:
    member = await sign_up(stub)
    forged = attack(member, tokens)
    for path in ("/me", "/users", f"/users/{member.id}"):
        reply = await gateway.get(path, headers={"authorization": f"Bearer {forged}"})
        assert reply.status_code == 401, (path, reply.text)
    invite = await gateway.post(
        "/invites", json={"email": "x@example.com", "role": "admin"}, headers={"authorization": f"Bearer {forged}"}
    )
    assert invite.status_code == 401
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetUser(auth_pb2.GetUserRequest(), metadata=(("authorization", f"Bearer {forged}"),))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_genuine_token_is_accepted_as_the_control(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, tokens: TokenFactory
) -> None:
    # The attack tests above would pass vacuously if nothing were accepted.
    member = await sign_up(stub)
    crafted = tokens.user(org=member.org, sub=member.id, role="admin")
    assert (await gateway.get("/me", headers={"authorization": f"Bearer {crafted}"})).status_code == 200


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"])
async def test_missing_or_malformed_authorization_is_401(gateway: httpx.AsyncClient, header: str) -> None:
    headers = {"authorization": header} if header else {}
    reply = await gateway.get("/me", headers=headers)
    assert reply.status_code == 401


async def test_the_key_id_is_the_kernels(stub: auth_pb2_grpc.AuthServiceAsyncStub, tokens: TokenFactory) -> None:
    member = await sign_up(stub)
    assert jwt.get_unverified_header(member.access_token)["kid"] == key_id(tokens.access_key.public_key())


async def test_refresh_rotates(gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub) -> None:
    member = await sign_up(stub)
    first = await gateway.post("/auth/refresh", json={"refresh_token": member.refresh_token})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["refresh_token"] != member.refresh_token
    assert body["user"]["id"] == member.id
    assert (await gateway.get("/me", headers={"authorization": f"Bearer {body['access_token']}"})).status_code == 200
    second = await gateway.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert second.status_code == 200


async def test_reusing_a_spent_refresh_token_revokes_the_family(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub
) -> None:
    member = await sign_up(stub)
    rotated = (await gateway.post("/auth/refresh", json={"refresh_token": member.refresh_token})).json()
    # A thief replays the spent token: refused, and the legitimate holder's newer token dies too.
    replay = await gateway.post("/auth/refresh", json={"refresh_token": member.refresh_token})
    assert replay.status_code == 401
    assert "already used" in replay.json()["message"]
    after = await gateway.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert after.status_code == 401
    # Other log-ins (other families) are untouched.
    other = await stub.LogIn(
        auth_pb2.LogInRequest(email=member.email, password="correct horse battery", organization_id=member.org)
    )
    assert (await gateway.post("/auth/refresh", json={"refresh_token": other.tokens.refresh_token})).status_code == 200


async def test_log_out_revokes_the_refresh_token(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub
) -> None:
    member = await sign_up(stub)
    out = await gateway.post("/auth/logout", json={"refresh_token": member.refresh_token})
    assert out.status_code == 204
    refused = await gateway.post("/auth/refresh", json={"refresh_token": member.refresh_token})
    assert refused.status_code == 401
    assert refused.json()["message"] == "invalid refresh token"
    again = await gateway.post("/auth/logout", json={"refresh_token": member.refresh_token})
    assert again.status_code == 204


async def _refused(stub: auth_pb2_grpc.AuthServiceAsyncStub, token: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=token))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return raised.value.details() or ""


async def _revoked_counts(owner_engine: AsyncEngine, user_id: str) -> dict[bool, int]:
    """How many of the user's refresh tokens are revoked (True) and live (False)."""
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text("select revoked_at is not null, count(*) from auth.refresh_tokens where user_id = :u group by 1"),
            {"u": user_id},
        )
        return {bool(revoked): int(n) for revoked, n in rows}


async def test_grpc_log_out_revokes_the_whole_family_and_only_it(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    member = await sign_up(stub)
    rotated = (await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=member.refresh_token))).tokens
    elsewhere = await stub.LogIn(
        auth_pb2.LogInRequest(email=member.email, password="correct horse battery", organization_id=member.org)
    )
    assert await _revoked_counts(owner_engine, member.id) == {False: 3}

    await stub.LogOut(auth_pb2.LogOutRequest(refresh_token=rotated.refresh_token))
    for token in (member.refresh_token, rotated.refresh_token):
        assert await _refused(stub, token) == "invalid refresh token"
    # The log-in on another device is another family: it still refreshes.
    assert await _revoked_counts(owner_engine, member.id) == {True: 2, False: 1}
    again = await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=elsewhere.tokens.refresh_token))
    assert again.user.id == member.id
    before = await _revoked_counts(owner_engine, member.id)
    assert before == {True: 2, False: 2}  # the other device's token, rotated, and its successor

    # Logging out twice, or with a token never issued, is no error and changes nothing.
    for token in (rotated.refresh_token, "", "garbage", f"{member.org}.{'A' * 43}"):
        await stub.LogOut(auth_pb2.LogOutRequest(refresh_token=token))
    assert await _revoked_counts(owner_engine, member.id) == before


async def test_logging_out_with_an_older_token_of_the_family_ends_the_newest(
    stub: auth_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    member = await sign_up(stub)
    rotated = (await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=member.refresh_token))).tokens
    await stub.LogOut(auth_pb2.LogOutRequest(refresh_token=member.refresh_token))
    assert await _refused(stub, rotated.refresh_token) == "invalid refresh token"


async def test_expired_refresh_token_is_refused(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    member = await sign_up(stub)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("update auth.refresh_tokens set expires_at = now() - interval '1 second' where user_id = :u"),
            {"u": member.id},
        )
    reply = await gateway.post("/auth/refresh", json={"refresh_token": member.refresh_token})
    assert reply.status_code == 401
    assert "expired" in reply.json()["message"]


@pytest.mark.parametrize(
    "token", ["", "garbage", "00000000-0000-4000-8000-000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
)
async def test_made_up_refresh_tokens_are_refused(stub: auth_pb2_grpc.AuthServiceAsyncStub, token: str) -> None:
    assert await _refused(stub, token) == "invalid refresh token"


async def test_refresh_tokens_are_stored_hashed(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    member = await sign_up(stub)
    async with owner_engine.connect() as conn:
        hashes = (
            (
                await conn.execute(
                    text("select token_hash from auth.refresh_tokens where user_id = :u"), {"u": member.id}
                )
            )
            .scalars()
            .all()
        )
    assert len(hashes) == 1
    secret = member.refresh_token.split(".", 1)[1]
    assert secret not in hashes[0]


async def test_public_routes_ignore_a_stale_bearer_the_browser_attaches(
    gateway: httpx.AsyncClient, stub: auth_pb2_grpc.AuthServiceAsyncStub, tokens: TokenFactory
) -> None:
    member = await sign_up(stub)
    stale = {"authorization": f"Bearer {expired(member, tokens)}"}
    refreshed = await gateway.post("/auth/refresh", json={"refresh_token": member.refresh_token}, headers=stale)
    assert refreshed.status_code == 200, refreshed.text
    body = {"email": member.email, "password": "correct horse battery", "organization_id": member.org}
    assert (await gateway.post("/auth/login", json=body, headers=stale)).status_code == 200
    logout = {"refresh_token": refreshed.json()["refresh_token"]}
    assert (await gateway.post("/auth/logout", json=logout, headers=stale)).status_code == 204
