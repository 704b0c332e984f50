"""The auth use cases: plain async functions over a unit of work and the adapters.

Anonymous calls (sign-up, register, log-in, refresh, log-out) name their tenant in the
request (the organization id, or the one a refresh token carries); the others take the
verified :class:`Principal`. Errors are the kernel's typed errors; nothing here knows gRPC.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.auth import commands
from services.auth.domain import (
    ORGANIZATION_CREATED,
    ORGANIZATION_NAME_MAX_LENGTH,
    USER_REGISTERED,
    IssuedInvite,
    Organization,
    Role,
    Session,
    User,
    UserPage,
    UserStatus,
    check_new_password,
    check_timezone,
    check_workspace,
    clean_name,
    client_host,
    derive_workspace,
    invite_ttl_hours,
    may_invite,
    normalize_email,
    parse_uuid,
    role_of,
    workspace_candidates,
)
from services.auth.passwords import PasswordHasher
from services.auth.repository import (
    InviteRepository,
    OrganizationRepository,
    RefreshTokenRepository,
    UserRepository,
    WorkspaceDirectory,
)
from services.auth.tokens import AccessTokenMinter, digest, new_refresh_token, new_secret, refresh_token_tenant
from workpulse import outbox
from workpulse.db import UnitOfWork
from workpulse.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated, Unavailable
from workpulse.identity import Principal
from workpulse.ratelimit import RateLimiter
from workpulse.redisconn import Keys

SCHEMA = "auth"
BAD_CREDENTIALS = "invalid email, password or organization"
BAD_REFRESH_TOKEN = "invalid refresh token"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Derived workspace names tried per sign-up: the name, 8 numbered ones, then random suffixes.
WORKSPACE_ATTEMPTS = 24


@dataclass(frozen=True, slots=True)
class Policy:
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    invite_ttl_hours: int = 72
    login_attempts_per_account: int = 10
    login_attempts_per_address: int = 100
    login_window_seconds: int = 900
    registrations_per_address: int = 30
    registration_window_seconds: int = 3600


@dataclass(frozen=True, slots=True)
class Adapters:
    """What the use cases work with; the composition root wires the real ones.

    ``directory`` is a unit of work on the maintenance engine, used for one thing only:
    finding the organization a workspace name belongs to, before a tenant is known."""

    uow: UnitOfWork
    passwords: PasswordHasher
    access_tokens: AccessTokenMinter
    limiter: RateLimiter
    keys: Keys
    policy: Policy
    directory: UnitOfWork


async def _count_registration(a: Adapters, client_address: str) -> None:
    """Sign-ups and registrations cost bcrypt work: bounded per client address."""
    await a.limiter.hit(
        a.keys.key("register", "address", client_host(client_address)),
        limit=a.policy.registrations_per_address,
        window_seconds=a.policy.registration_window_seconds,
        what="registrations from this address",
    )


async def sign_up(a: Adapters, cmd: commands.SignUp) -> tuple[Organization, Session]:
    email = normalize_email(cmd.email)
    check_new_password(cmd.password)
    name = clean_name(cmd.name)
    org_name = clean_name(cmd.organization_name, field="organization_name", max_length=ORGANIZATION_NAME_MAX_LENGTH)
    timezone = check_timezone(cmd.timezone)
    # Only an empty workspace means "derive one": "  " is an invalid name, not an absent one.
    chosen = check_workspace(cmd.workspace) if cmd.workspace else None
    await _count_registration(a, cmd.client_address)
    password_hash = await a.passwords.hash(cmd.password)
    org_id = str(uuid.uuid4())
    async with a.uow.tenant(org_id) as conn:
        organization = await _add_organization(conn, org_id, org_name, timezone, chosen)
        user = await UserRepository(conn).add(
            user_id=str(uuid.uuid4()),
            organization_id=org_id,
            email=email,
            name=name,
            password_hash=password_hash,
            role=Role.ADMIN,
        )
        assert user is not None, "a new organization has no users yet"
        await outbox.add(conn, SCHEMA, org_id, ORGANIZATION_CREATED, _organization_event(organization))
        await outbox.add(conn, SCHEMA, org_id, USER_REGISTERED, _user_event(user))
        session = await _open_session(conn, a, user)
    return organization, session


async def _add_organization(
    conn: AsyncConnection, org_id: str, name: str, timezone: str, chosen: str | None
) -> Organization:
    """The new organization under the chosen workspace name (AlreadyExists when taken), or
    under the first free one derived from its name."""
    organizations = OrganizationRepository(conn)
    if chosen is not None:
        added = await organizations.add(org_id, name, timezone, chosen)
        if added is None:
            raise AlreadyExists("workspace: already taken", field="workspace")
        return added
    for candidate in itertools.islice(workspace_candidates(derive_workspace(name)), WORKSPACE_ATTEMPTS):
        added = await organizations.add(org_id, name, timezone, candidate)
        if added is not None:
            return added
    raise Unavailable("workspace: no free name derived from organization_name; choose one")


async def register_with_invite(a: Adapters, cmd: commands.RegisterWithInvite) -> Session:
    org_id = parse_uuid(cmd.organization_id, field="organization_id")
    if not cmd.invite_token:
        raise InvalidArgument("invite_token: joining an organization needs an invite", field="invite_token")
    email = normalize_email(cmd.email)
    check_new_password(cmd.password)
    name = clean_name(cmd.name)
    await _count_registration(a, cmd.client_address)
    password_hash = await a.passwords.hash(cmd.password)
    async with a.uow.tenant(org_id) as conn:
        invites = InviteRepository(conn)
        invite = await invites.lock_by_token(org_id, digest(cmd.invite_token))
        if invite is None:
            raise InvalidArgument("invite_token: no such invite in this organization", field="invite_token")
        invite.check_redeemable(email, datetime.now(UTC))
        user = await UserRepository(conn).add(
            user_id=str(uuid.uuid4()),
            organization_id=org_id,
            email=email,
            name=name,
            password_hash=password_hash,
            role=invite.role,
        )
        if user is None:
            raise AlreadyExists("email: already registered in this organization", field="email")
        await invites.mark_used(org_id, invite.id, user.id)
        await outbox.add(conn, SCHEMA, org_id, USER_REGISTERED, _user_event(user))
        return await _open_session(conn, a, user)


async def log_in(a: Adapters, cmd: commands.LogIn) -> Session:
    """By organization id or by workspace name (exactly one). An unknown workspace is
    answered as a wrong password, after the same limits and bcrypt work."""
    if cmd.organization_id and cmd.organization:
        raise InvalidArgument(
            "organization: give either organization (the workspace name) or organization_id, not both",
            field="organization",
        )
    if not (cmd.organization_id or cmd.organization):
        raise InvalidArgument(
            "organization_id: required (or organization, the workspace name)", field="organization_id"
        )
    workspace = check_workspace(cmd.organization, field="organization") if cmd.organization else None
    given_id = None if workspace else parse_uuid(cmd.organization_id, field="organization_id")
    email = normalize_email(cmd.email)
    if not cmd.password:
        raise InvalidArgument("password: must not be empty", field="password")
    # Any other password goes through the same limits and bcrypt work as a wrong one: one
    # bcrypt cannot hold whole (over 72 bytes, control characters) is refused by the hasher
    # before bcrypt, and answered as a wrong password, never by a distinct error.
    window = a.policy.login_window_seconds
    await a.limiter.hit(
        a.keys.key("login", "address", client_host(cmd.client_address)),
        limit=a.policy.login_attempts_per_address,
        window_seconds=window,
        what="log-in attempts from this address",
    )
    org_id = given_id or await _organization_of_workspace(a, workspace or "")
    # One counter per account however its organization is named; an unknown workspace
    # has counters of its own, so it runs into the same 429 as a real one.
    account_key = (
        a.keys.tenant(org_id, "login", digest(email)[:32])
        if org_id is not None
        else a.keys.key("login", "workspace", digest(f"{workspace}|{email}")[:32])
    )
    await a.limiter.hit(
        account_key, limit=a.policy.login_attempts_per_account, window_seconds=window, what="log-in attempts"
    )
    found = None
    if org_id is not None:
        async with a.uow.tenant(org_id) as conn:
            found = await UserRepository(conn).credentials(org_id, email)
    # The same bcrypt work whether or not the user exists: an unknown email takes as long.
    matches = await a.passwords.verify(cmd.password, found.password_hash if found else None)
    if found is None or not matches or found.user.status is not UserStatus.ACTIVE:
        raise Unauthenticated(BAD_CREDENTIALS)
    await a.limiter.reset(account_key)
    async with a.uow.tenant(found.user.organization_id) as conn:
        user = await UserRepository(conn).touch_last_seen(found.user.organization_id, found.user.id)
        return await _open_session(conn, a, user)


async def _organization_of_workspace(a: Adapters, workspace: str) -> str | None:
    async with a.directory.unscoped() as conn:
        return await WorkspaceDirectory(conn).organization_id(workspace)


async def rename_workspace(a: Adapters, caller: Principal, workspace: str) -> Organization:
    """Admins only. The old name stops working at once (log-ins by it are refused); the
    organization id, tokens and invites are unaffected."""
    org_id = caller.tenant()
    caller.require_role(Role.ADMIN)
    name = check_workspace(workspace)
    async with a.uow.tenant(org_id) as conn:
        renamed = await OrganizationRepository(conn).rename_workspace(org_id, name)
    if renamed is None:
        raise NotFound("organization not found")
    return renamed


async def refresh(a: Adapters, refresh_token: str) -> Session:
    """Rotates the token. A spent token presented again means it leaked: the whole family
    (every token descended from that log-in) is revoked, and that revocation commits."""
    org_id = refresh_token_tenant(refresh_token)
    if org_id is None:
        raise Unauthenticated(BAD_REFRESH_TOKEN)
    async with a.uow.tenant(org_id) as conn:
        tokens = RefreshTokenRepository(conn)
        record = await tokens.lock_by_hash(org_id, digest(refresh_token))
        if record is None or record.revoked_at is not None:
            refusal = BAD_REFRESH_TOKEN
        elif record.rotated_at is not None:
            await tokens.revoke_family(org_id, record.family_id)
            refusal = "refresh token already used; the session has been revoked"
        elif record.expires_at <= datetime.now(UTC):
            refusal = "refresh token expired"
        else:
            user = await UserRepository(conn).get(org_id, record.user_id)
            if user is not None and user.status is UserStatus.ACTIVE:
                await tokens.mark_rotated(org_id, record.id)
                return await _open_session(conn, a, user, family_id=record.family_id)
            await tokens.revoke_family(org_id, record.family_id)
            refusal = BAD_REFRESH_TOKEN
    # Raised after the transaction commits, so a family revoked above stays revoked.
    raise Unauthenticated(refusal)


async def log_out(a: Adapters, refresh_token: str) -> None:
    """Revokes the token's family (that log-in on every device it was refreshed to).
    Unknown tokens are ignored: logging out twice is not an error."""
    org_id = refresh_token_tenant(refresh_token)
    if org_id is None:
        return
    async with a.uow.tenant(org_id) as conn:
        tokens = RefreshTokenRepository(conn)
        record = await tokens.lock_by_hash(org_id, digest(refresh_token))
        if record is not None:
            await tokens.revoke_family(org_id, record.family_id)


async def get_user(a: Adapters, caller: Principal, user_id: str) -> User:
    org_id = caller.tenant()
    wanted = parse_uuid(user_id, field="user_id") if user_id else caller.subject
    if wanted != caller.subject:
        caller.require_role(Role.ADMIN, Role.MANAGER)
    async with a.uow.tenant(org_id) as conn:
        user = await UserRepository(conn).get(org_id, wanted)
    if user is None:
        raise NotFound("user not found")
    return user


def _named_users(user_ids: tuple[str, ...]) -> list[str] | None:
    """The users a list names (None: it names none), each a UUID, at most a page."""
    if not user_ids:
        return None
    if len(user_ids) > MAX_PAGE_SIZE:
        raise InvalidArgument(f"user_ids: at most {MAX_PAGE_SIZE} ids", field="user_ids")
    try:
        return list(dict.fromkeys(str(uuid.UUID(u)) for u in user_ids))
    except ValueError:
        raise InvalidArgument("user_ids: must be UUIDs", field="user_ids") from None


async def list_users(a: Adapters, caller: Principal, query: commands.ListUsers) -> UserPage:
    """The organization's users for managers and admins; only themselves for employees."""
    org_id = caller.tenant()
    if not 0 <= query.page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size: must be between 1 and {MAX_PAGE_SIZE}", field="page_size")
    size = query.page_size or DEFAULT_PAGE_SIZE
    after = _decode_cursor(query.page_token) if query.page_token else None
    named = _named_users(query.user_ids)
    async with a.uow.tenant(org_id) as conn:
        users = UserRepository(conn)
        if named is not None:
            mine = named if caller.sees_organization else [u for u in named if u == caller.subject]
            return UserPage(await users.many(org_id, mine) if mine else [], "")
        if not caller.sees_organization:
            me = await users.get(org_id, caller.subject)
            return UserPage([me] if me is not None and after is None else [], "")
        found = await users.page(org_id, after=after, limit=size + 1)
    more = len(found) > size
    found = found[:size]
    return UserPage(found, _encode_cursor(found[-1]) if more else "")


async def create_invite(a: Adapters, caller: Principal, cmd: commands.CreateInvite) -> IssuedInvite:
    org_id = caller.tenant()
    caller.require_role(Role.ADMIN, Role.MANAGER)
    role = role_of(cmd.role)
    may_invite(Role(caller.role), role)
    email = normalize_email(cmd.email)
    hours = invite_ttl_hours(cmd.ttl_hours, a.policy.invite_ttl_hours)
    token = new_secret()
    async with a.uow.tenant(org_id) as conn:
        if await UserRepository(conn).email_taken(org_id, email):
            raise AlreadyExists("email: already a member of this organization", field="email")
        organization = await OrganizationRepository(conn).get(org_id)
        if organization is None:
            raise NotFound("organization not found")
        invite = await InviteRepository(conn).add(
            invite_id=str(uuid.uuid4()),
            organization_id=org_id,
            token_hash=digest(token),
            email=email,
            role=role,
            created_by=caller.subject,
            ttl_hours=hours,
        )
    return IssuedInvite(invite, token, organization.workspace)


def public_keys(a: Adapters) -> str:
    return a.access_tokens.jwks_json()


async def _open_session(conn: AsyncConnection, a: Adapters, user: User, *, family_id: str | None = None) -> Session:
    """A new access token and a refresh token (a new family unless rotating one)."""
    refresh_token = new_refresh_token(user.organization_id)
    await RefreshTokenRepository(conn).add(
        token_id=str(uuid.uuid4()),
        organization_id=user.organization_id,
        family_id=family_id or str(uuid.uuid4()),
        user_id=user.id,
        token_hash=digest(refresh_token),
        ttl_seconds=a.policy.refresh_token_ttl_seconds,
    )
    return Session(user, a.access_tokens.mint(user), refresh_token, a.access_tokens.lifetime_seconds)


def _encode_cursor(user: User) -> str:
    raw = f"{user.created_at.isoformat()}|{user.id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(token: str) -> tuple[datetime, str]:
    try:
        created, _, user_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return datetime.fromisoformat(created), str(uuid.UUID(user_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("page_token: not a token this service issued", field="page_token") from None


def _organization_event(org: Organization) -> dict[str, str]:
    return {
        "organizationId": org.id,
        "name": org.name,
        "planType": org.plan_type,
        "timezone": org.timezone,
        "workspace": org.workspace,
    }


def _user_event(user: User) -> dict[str, str]:
    return {
        "userId": user.id,
        "organizationId": user.organization_id,
        "email": user.email,
        "name": user.name,
        "role": user.role.value,
        "timestamp": user.created_at.isoformat(),
    }
