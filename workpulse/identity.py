"""Who is calling: verification of access tokens and of service identities.

Access tokens are EdDSA JWTs minted by the auth service only; every service verifies them
itself from the public keys (zero trust inside the mesh). Service identities are EdDSA
JWTs with their own key and issuer, held only by services, so no user can obtain one.
"""

from __future__ import annotations

import functools
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workpulse.errors import PermissionDenied, Unauthenticated

USER_ROLES = ("admin", "manager", "employee")
SERVICE_ROLE = "service"
SERVICE_ISSUER = "workpulse-mesh"
_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller of a request."""

    subject: str
    role: str
    organization_id: str | None
    token_id: str
    expires_at: int

    @property
    def is_service(self) -> bool:
        return self.role == SERVICE_ROLE

    @property
    def sees_organization(self) -> bool:
        """Managers and admins see their whole organization; employees only themselves."""
        return self.role in ("admin", "manager")

    def tenant(self) -> str:
        if self.organization_id is None:
            raise PermissionDenied("this call needs a user of an organization")
        return self.organization_id

    def require_role(self, *roles: str) -> None:
        if self.role not in roles:
            raise PermissionDenied(f"requires role {' or '.join(roles)}")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def ensure_keypair(private_path: Path, public_path: Path) -> None:
    """Create an Ed25519 key pair on first start (development and embedded mode)."""
    if private_path.exists() and public_path.exists():
        return
    private_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


# Verified tokens remembered per process (a few hundred bytes each).
VERIFIED_TOKENS_KEPT = 4096


class TokenVerifier:
    """Verifies access tokens and service identities; rejects anything but EdDSA."""

    def __init__(
        self,
        access_keys: list[Ed25519PublicKey],
        service_key: Ed25519PublicKey | None,
        *,
        issuer: str,
        audience: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._access = {key_id(k): k for k in access_keys}
        self._clock = clock
        self._service = service_key
        self._issuer = issuer
        self._audience = audience
        # A signature check costs ~50 us and every call of a hot path carries one or two
        # tokens (the caller's and the gateway's identity), mostly the same few: remember
        # what verified. Only successes are kept; expiry is re-checked on every hit.
        self._verified = functools.lru_cache(maxsize=VERIFIED_TOKENS_KEPT)(self._verify_signed)

    def verify(self, token: str) -> Principal:
        found = self._verified(token)
        if found.expires_at <= self._clock():
            raise Unauthenticated("token expired")
        return found

    def _verify_signed(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token") from None
        if header.get("alg") != "EdDSA":
            raise Unauthenticated("token algorithm not accepted")
        kid = header.get("kid")
        if header.get("typ") == "service":
            return self._verify_service(token)
        key = self._access.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthenticated("token signed by an unknown key")
        claims = self._decode(token, key, self._issuer)
        role, org = claims.get("role"), claims.get("org")
        if role not in USER_ROLES or not isinstance(org, str):
            raise Unauthenticated("token carries no valid role or organization")
        return Principal(str(claims["sub"]), str(role), org, str(claims["jti"]), int(str(claims["exp"])))

    def _verify_service(self, token: str) -> Principal:
        if self._service is None:
            raise Unauthenticated("service identities are not accepted here")
        claims = self._decode(token, self._service, SERVICE_ISSUER)
        if claims.get("role") != SERVICE_ROLE:
            raise Unauthenticated("not a service identity")
        return Principal(str(claims["sub"]), SERVICE_ROLE, None, str(claims["jti"]), int(str(claims["exp"])))

    def _decode(self, token: str, key: Ed25519PublicKey, issuer: str) -> dict[str, object]:
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                audience=self._audience,
                issuer=issuer,
                options={"require": _CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("token audience not accepted") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token issuer not accepted") from None
        except jwt.PyJWTError:
            raise Unauthenticated("invalid token") from None
        return claims


class ServiceIdentity:
    """Mints the short-lived token a service presents when it calls another service."""

    LIFETIME = 300

    def __init__(self, name: str, key: Ed25519PrivateKey, audience: str) -> None:
        self._name = name
        self._key = key
        self._audience = audience
        self._token = ""
        self._expires = 0.0

    def token(self) -> str:
        now = time.time()
        if now > self._expires - 60:
            claims = {
                "iss": SERVICE_ISSUER,
                "aud": self._audience,
                "sub": f"service:{self._name}",
                "role": SERVICE_ROLE,
                "iat": int(now),
                "exp": int(now) + self.LIFETIME,
                "jti": uuid.uuid4().hex,
            }
            self._token = jwt.encode(claims, self._key, algorithm="EdDSA", headers={"typ": "service"})
            self._expires = now + self.LIFETIME
        return self._token
