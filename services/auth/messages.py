"""Domain objects to protobuf messages, and the wire's role enum to the domain's."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from services.auth.domain import Organization, Role, Session, User
from workpulse.auth.v1 import auth_pb2

ROLE_TO_WIRE = {
    Role.ADMIN: auth_pb2.ROLE_ADMIN,
    Role.MANAGER: auth_pb2.ROLE_MANAGER,
    Role.EMPLOYEE: auth_pb2.ROLE_EMPLOYEE,
}
_ROLE_FROM_WIRE: dict[int, str] = {int(wire): role.value for role, wire in ROLE_TO_WIRE.items()}


def role_from_wire(value: int) -> str:
    """The role's name, or "" for ROLE_UNSPECIFIED and unknown numbers (the use case rejects it)."""
    return _ROLE_FROM_WIRE.get(int(value), "")


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def user(u: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=u.id,
        organization_id=u.organization_id,
        email=u.email,
        name=u.name,
        role=ROLE_TO_WIRE[u.role],
        status=u.status.value,
        timezone=u.timezone,
        last_seen=timestamp(u.last_seen),
        created_at=timestamp(u.created_at),
        workspace=u.workspace,
    )


def organization(o: Organization) -> auth_pb2.Organization:
    return auth_pb2.Organization(
        id=o.id,
        name=o.name,
        plan_type=o.plan_type,
        timezone=o.timezone,
        created_at=timestamp(o.created_at),
        workspace=o.workspace,
    )


def tokens(s: Session) -> auth_pb2.Tokens:
    return auth_pb2.Tokens(access_token=s.access_token, refresh_token=s.refresh_token, expires_in=s.expires_in)
