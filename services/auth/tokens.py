"""Token minting: EdDSA access tokens, their JWK set, and opaque secrets stored hashed.

Only auth holds the private key; every service verifies with the public key
(``workpulse.identity.TokenVerifier``), which it may fetch from ``GetPublicKeys``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Iterable

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.auth.domain import User
from workpulse.identity import key_id


class AccessTokenMinter:
    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        issuer: str,
        audience: str,
        lifetime_seconds: int,
        verification_keys: Iterable[Ed25519PublicKey] = (),
    ) -> None:
        self._key = private_key
        self._kid = key_id(private_key.public_key())
        self._issuer = issuer
        self._audience = audience
        self.lifetime_seconds = lifetime_seconds
        published = {key_id(k): k for k in verification_keys}
        published[self._kid] = private_key.public_key()
        self._published = published

    def mint(self, user: User) -> str:
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user.id,
            "org": user.organization_id,
            "role": user.role.value,
            "iat": now,
            "exp": now + self.lifetime_seconds,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self._kid})

    def jwks_json(self) -> str:
        """The signing key and any older keys still accepted, as an RFC 7517 key set."""
        keys = [_jwk(kid, key) for kid, key in sorted(self._published.items())]
        return json.dumps({"keys": keys}, separators=(",", ":"))


def _jwk(kid: str, key: Ed25519PublicKey) -> dict[str, str]:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


def new_secret() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What the database keeps of a secret: enough to recognise it, useless to a thief."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token(organization_id: str) -> str:
    """Opaque to clients; it names its tenant so the lookup runs under that tenant's RLS."""
    return f"{organization_id}.{new_secret()}"


def refresh_token_tenant(token: str) -> str | None:
    """The tenant a refresh token names, or None when it is not shaped like one of ours."""
    org, sep, secret = token.partition(".")
    if not sep or len(secret) < 32:
        return None
    try:
        return str(uuid.UUID(org))
    except ValueError:
        return None
