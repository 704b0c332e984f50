"""Token verification: every forgery is refused, valid tokens are accepted."""

from __future__ import annotations

import base64
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support import TokenFactory
from workpulse.errors import Unauthenticated
from workpulse.identity import SERVICE_ISSUER, ServiceIdentity, TokenVerifier, key_id, load_public_key


@pytest.fixture(scope="module")
def verifier(key_dir):  # type: ignore[no-untyped-def]
    return TokenVerifier(
        [load_public_key(key_dir / "access_public.pem")],
        load_public_key(key_dir / "service_public.pem"),
        issuer="workpulse-auth",
        audience="workpulse",
    )


def test_valid_user_token_gives_its_principal(verifier: TokenVerifier, tokens: TokenFactory) -> None:
    org, user = str(uuid.uuid4()), str(uuid.uuid4())
    principal = verifier.verify(tokens.user(org, user, "manager"))
    assert (principal.subject, principal.organization_id, principal.role) == (user, org, "manager")
    assert principal.sees_organization and not principal.is_service


def test_service_identity_is_recognised(verifier: TokenVerifier, tokens: TokenFactory) -> None:
    principal = verifier.verify(tokens.service("ingest"))
    assert principal.is_service and principal.subject == "service:ingest"


def _unsigned(claims: dict[str, object]) -> str:
    def part(obj: object) -> str:
        import json

        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "workpulse-auth",
        "aud": "workpulse",
        "sub": str(uuid.uuid4()),
        "org": str(uuid.uuid4()),
        "role": "admin",
        "iat": now,
        "exp": now + 600,
        "jti": "x",
    }
    return base | over


def test_forgeries_are_refused(verifier: TokenVerifier, tokens: TokenFactory, key_dir) -> None:  # type: ignore[no-untyped-def]
    public_pem = (key_dir / "access_public.pem").read_bytes()
    other = Ed25519PrivateKey.generate()
    forged = {
        "alg none": _unsigned(_claims()),
        "HS256 keyed with the public key": _hs256(public_pem, tokens.kid),
        "wrong key, same kid": jwt.encode(_claims(), other, algorithm="EdDSA", headers={"kid": tokens.kid}),
        "unknown kid": jwt.encode(_claims(), other, algorithm="EdDSA", headers={"kid": key_id(other.public_key())}),
        "expired": tokens.user(ttl=-10),
        "wrong audience": tokens.user(aud="someone-else"),
        "wrong issuer": tokens.user(iss="evil"),
        "role not a user role": tokens.user(role="service"),
        "organization not a string": tokens.user(org=12345),  # type: ignore[arg-type]
        "garbage": "not-a-token",
        "service typ signed with the access key": jwt.encode(
            _claims(iss=SERVICE_ISSUER, role="service"),
            tokens.access_key,
            algorithm="EdDSA",
            headers={"typ": "service"},
        ),
    }
    for name, token in forged.items():
        with pytest.raises(Unauthenticated):
            verifier.verify(token)
            pytest.fail(f"accepted: {name}")


def _hs256(secret: bytes, kid: str) -> str:
    """HS/EdDSA confusion: an HMAC token keyed with the public key's bytes (PyJWT refuses to
    make one from a PEM, so it is assembled by hand)."""
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{b64(json.dumps(_claims()).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_service_identity_token_is_cached_and_short_lived(key_dir) -> None:  # type: ignore[no-untyped-def]
    key = serialization.load_pem_private_key((key_dir / "service_private.pem").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    identity = ServiceIdentity("sessions", key, "workpulse")
    first = identity.token()
    assert identity.token() == first
    claims = jwt.decode(first, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] <= ServiceIdentity.LIFETIME


def test_a_token_verified_once_is_still_refused_once_it_expires(key_dir, tokens: TokenFactory) -> None:  # type: ignore[no-untyped-def]
    now = [time.time()]
    verifier = TokenVerifier(
        [load_public_key(key_dir / "access_public.pem")],
        None,
        issuer="workpulse-auth",
        audience="workpulse",
        clock=lambda: now[0],
    )
    token = tokens.user(role="employee", ttl=60)
    assert verifier.verify(token).role == "employee"  # verified, and remembered
    now[0] += 61  # the clock passes its expiry; the remembered success must not outlive it
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)


def test_a_refused_token_is_refused_again(verifier: TokenVerifier, tokens: TokenFactory) -> None:
    forged = tokens.user() + "x"
    for _ in range(2):  # a failure is never remembered as a success
        with pytest.raises(Unauthenticated):
            verifier.verify(forged)
