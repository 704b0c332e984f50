"""Identity rules: who may join, invite and see whom. Plain Python: no grpc, no SQL."""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workpulse.errors import InvalidArgument, PermissionDenied

PASSWORD_MIN_LENGTH = 8
# bcrypt reads at most 72 bytes of a password, and a NUL ends it (see check_bcrypt_can_hold).
PASSWORD_MAX_BYTES = 72
NAME_MAX_LENGTH = 100
ORGANIZATION_NAME_MAX_LENGTH = 200
EMAIL_MAX_LENGTH = 254
INVITE_MAX_TTL_HOURS = 30 * 24
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
WORKSPACE_MIN_LENGTH = 3
WORKSPACE_MAX_LENGTH = 63
# Lowercase ASCII letters and digits in runs joined by single hyphens, starting with a
# letter (a DNS label's shape). The migration's CHECK constraint says the same.
_WORKSPACE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
WORKSPACE_RULE = (
    f"{WORKSPACE_MIN_LENGTH} to {WORKSPACE_MAX_LENGTH} lowercase letters (a-z), digits and single hyphens, "
    "starting with a letter and ending with a letter or digit"
)
# Letters NFKD does not decompose into ASCII; everything else is NFKD with its marks dropped.
_TRANSLITERATIONS = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "Þ": "TH",
        "ł": "l",
        "Ł": "L",
        "\u0131": "i",  # dotless i (Turkish)
        "&": " and ",
    }
)
# Before the random suffixes, the readable ones: acme, acme-2 .. acme-9.
_NUMBERED_SUFFIXES = range(2, 10)
_RANDOM_SUFFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_RANDOM_SUFFIX_LENGTH = 4

ORGANIZATION_CREATED = "ORGANIZATION_CREATED"
USER_REGISTERED = "USER_REGISTERED"


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    EMPLOYEE = "employee"


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    plan_type: str
    timezone: str
    created_at: datetime
    workspace: str


@dataclass(frozen=True, slots=True)
class User:
    id: str
    organization_id: str
    email: str
    name: str
    role: Role
    status: UserStatus
    timezone: str
    last_seen: datetime | None
    created_at: datetime
    # The workspace name of the user's organization.
    workspace: str


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user as log-in sees it: with the stored password hash."""

    user: User
    password_hash: str


@dataclass(frozen=True, slots=True)
class Invite:
    id: str
    organization_id: str
    email: str
    role: Role
    created_by: str
    expires_at: datetime
    used_at: datetime | None

    def check_redeemable(self, email: str, now: datetime) -> None:
        """An invite admits one registration, of the address it was issued to, before it expires."""
        if self.email != email:
            raise InvalidArgument("invite_token: this invite was issued to another email", field="invite_token")
        if self.used_at is not None:
            raise InvalidArgument("invite_token: this invite has already been used", field="invite_token")
        if self.expires_at <= now:
            raise InvalidArgument("invite_token: this invite has expired", field="invite_token")


@dataclass(frozen=True, slots=True)
class IssuedInvite:
    """A new invite with its secret, which is shown once and stored only hashed."""

    invite: Invite
    token: str
    # The organization's workspace name, which the invitee logs in with.
    workspace: str


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    id: str
    organization_id: str
    family_id: str
    user_id: str
    expires_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Session:
    """What sign-up, log-in and refresh hand back: the user and a fresh token pair."""

    user: User
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class UserPage:
    users: list[User]
    next_page_token: str


def may_invite(inviter: Role, invited: Role) -> None:
    """Admins invite anyone; managers invite managers and employees; employees nobody."""
    if inviter is Role.EMPLOYEE:
        raise PermissionDenied("only admins and managers can invite")
    if inviter is Role.MANAGER and invited is Role.ADMIN:
        raise PermissionDenied("managers cannot invite admins")


def role_of(value: str, *, field: str = "role") -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidArgument(f"{field}: must be admin, manager or employee", field=field) from None


def _has_control_characters(value: str) -> bool:
    """Any character of Unicode category Cc: the C0 controls (NUL included), DEL and the C1 controls."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)


def normalize_email(value: str, *, field: str = "email") -> str:
    email = value.strip().lower()
    if len(email) > EMAIL_MAX_LENGTH or not _EMAIL.match(email) or _has_control_characters(email):
        raise InvalidArgument(f"{field}: must be a valid email address", field=field)
    return email


def check_new_password(password: str) -> None:
    """The rule wherever a password is set (sign-up, accepting an invite): long enough, and
    something bcrypt holds whole."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise InvalidArgument(f"password: must be at least {PASSWORD_MIN_LENGTH} characters long", field="password")
    check_bcrypt_can_hold(password)


def check_bcrypt_can_hold(password: str) -> None:
    """Refuses a password bcrypt would not read whole.

    bcrypt reads a password as a NUL-terminated key, repeated to fill 72 bytes, and reads no
    further: ``ab\\0ab\\0ab`` hashes as ``ab`` does (so ``ab`` logs in), ``P\\0P`` as ``P``,
    and a password longer than 72 bytes is cut there (bcrypt 5 raises instead). Every control
    character is refused, not only NUL: none is typed on purpose, and a clear refusal beats a
    password that works on one keyboard only. The hasher applies this same rule before
    bcrypt at log-in, where a refused password is answered as a wrong one (no hash made
    under this rule can match it).
    """
    if _has_control_characters(password):
        raise InvalidArgument("password: must not contain control characters", field="password")
    if len(password.encode()) > PASSWORD_MAX_BYTES:
        raise InvalidArgument(f"password: at most {PASSWORD_MAX_BYTES} bytes (UTF-8)", field="password")


def clean_name(value: str, *, field: str = "name", max_length: int = NAME_MAX_LENGTH) -> str:
    """A display name: trimmed, not empty, bounded, printable."""
    name = value.strip()
    if not name:
        raise InvalidArgument(f"{field}: must not be empty", field=field)
    if len(name) > max_length:
        raise InvalidArgument(f"{field}: must be at most {max_length} characters long", field=field)
    if _has_control_characters(name):
        raise InvalidArgument(f"{field}: must not contain control characters", field=field)
    return name


def parse_uuid(value: str, *, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{field}: must be a UUID", field=field) from None


def check_timezone(value: str, *, field: str = "timezone") -> str:
    name = value.strip() or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(f"{field}: unknown time zone {name!r}", field=field) from None
    return name


def invite_ttl_hours(requested: int, default: int) -> int:
    hours = requested or default
    if not 1 <= hours <= INVITE_MAX_TTL_HOURS:
        raise InvalidArgument(f"ttl_hours: must be between 1 and {INVITE_MAX_TTL_HOURS}", field="ttl_hours")
    return hours


def client_host(address: str) -> str:
    """Log-in limits count per host, not per connection: drop a gRPC peer's scheme and port."""
    scheme, sep, rest = address.partition(":")
    if sep and scheme in ("ipv4", "ipv6"):
        address = rest.rsplit(":", 1)[0].strip("[]")
    return address or "unknown"


def check_workspace(value: str, *, field: str = "workspace") -> str:
    """A workspace name as given (sign-up, rename, log-in): trimmed and lowercased, then
    held to the rule; any letter case names the same workspace."""
    name = value.strip().lower()
    if not (WORKSPACE_MIN_LENGTH <= len(name) <= WORKSPACE_MAX_LENGTH and _WORKSPACE.fullmatch(name)):
        raise InvalidArgument(f"{field}: must be {WORKSPACE_RULE}", field=field)
    return name


def derive_workspace(organization_name: str) -> str:
    """The workspace name an organization called ``organization_name`` gets by default:
    transliterated to ASCII (accents dropped, ß as ss, & as and), lowercased, every run of
    other characters a hyphen. A name that would not start with a letter or is shorter
    than 3 gets the prefix ``org-``; one with no letter or digit at all is ``org``."""
    ascii_name = (
        unicodedata.normalize("NFKD", organization_name.translate(_TRANSLITERATIONS))
        .encode("ascii", "ignore")
        .decode()
        .lower()
    )
    slug = _trim(re.sub(r"[^a-z0-9]+", "-", ascii_name), WORKSPACE_MAX_LENGTH)
    if not slug:
        return "org"
    if not slug[0].isalpha() or len(slug) < WORKSPACE_MIN_LENGTH:
        slug = _trim(f"org-{slug}", WORKSPACE_MAX_LENGTH)
    return slug


def workspace_candidates(base: str, *, token: Callable[[int], str] | None = None) -> Iterator[str]:
    """``base``, then ``base-2`` .. ``base-9``, then ``base-`` and 4 random letters or
    digits, endlessly: the names to try, in order, until one is free. ``base`` is cut
    so that every candidate stays within 63 characters."""
    random_token = token or _random_token
    yield base
    for n in _NUMBERED_SUFFIXES:
        yield _with_suffix(base, str(n))
    while True:
        yield _with_suffix(base, random_token(_RANDOM_SUFFIX_LENGTH))


def _with_suffix(base: str, suffix: str) -> str:
    return f"{_trim(base, WORKSPACE_MAX_LENGTH - len(suffix) - 1)}-{suffix}"


def _trim(slug: str, length: int) -> str:
    return slug[:length].strip("-")


def _random_token(length: int) -> str:
    return "".join(secrets.choice(_RANDOM_SUFFIX_ALPHABET) for _ in range(length))
