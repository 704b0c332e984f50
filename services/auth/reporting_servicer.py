"""AuthReportingService: the users' time zones for the scheduler (service identities only),
streamed in batches from one query on the maintenance engine. Owned by the scheduler work
(issue 5)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workpulse.auth.v1 import auth_reporting_pb2 as pb
from workpulse.auth.v1 import auth_reporting_pb2_grpc
from workpulse.errors import InvalidArgument
from workpulse.grpc_server import Servicer

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = "workpulse.auth.v1.AuthReportingService"
DEFAULT_BATCH = 5000

MAX_NAMED_USERS = 1000

_ZONES = """
select u.organization_id::text, u.id::text, u.timezone, o.timezone
from auth.users u join auth.organizations o on o.id = u.organization_id
where u.status = 'active'
  and (cast(:org as uuid) is null or u.organization_id = cast(:org as uuid))
  and (cast(:users as uuid[]) is null or u.id = any(cast(:users as uuid[])))
order by u.organization_id, u.id
"""


def _ids(request: pb.StreamUserZonesRequest) -> tuple[str | None, list[str] | None]:
    """The organization and users the request narrows to (None: all), checked."""
    try:
        org = str(uuid.UUID(request.organization_id)) if request.organization_id else None
    except ValueError:
        raise InvalidArgument("organization_id must be a UUID", field="organization_id") from None
    if not request.user_ids:
        return org, None
    if org is None:
        raise InvalidArgument("user_ids needs organization_id", field="user_ids")
    if len(request.user_ids) > MAX_NAMED_USERS:
        raise InvalidArgument(f"user_ids holds at most {MAX_NAMED_USERS} ids", field="user_ids")
    try:
        return org, [str(uuid.UUID(u)) for u in request.user_ids]
    except ValueError:
        raise InvalidArgument("user_ids must be UUIDs", field="user_ids") from None


class AuthReportingServicer(auth_reporting_pb2_grpc.AuthReportingServiceServicer):
    def __init__(self, maintenance: AsyncEngine) -> None:
        self._engine = maintenance

    async def StreamUserZones(
        self, request: pb.StreamUserZonesRequest, context: Context
    ) -> AsyncIterator[pb.StreamUserZonesResponse]:
        org, users = _ids(request)
        async with self._engine.connect() as conn:
            result = await conn.stream(text(_ZONES), {"org": org, "users": users})
            async for rows in result.partitions(request.batch_size or DEFAULT_BATCH):
                yield pb.StreamUserZonesResponse(
                    users=[
                        pb.UserZone(organization_id=o, user_id=u, user_timezone=utz, organization_timezone=otz)
                        for o, u, utz, otz in rows
                    ]
                )


def reporting_servicer(maintenance: AsyncEngine) -> Servicer:
    """The servicer to mount on the auth server."""
    servicer = AuthReportingServicer(maintenance)
    add = auth_reporting_pb2_grpc.add_AuthReportingServiceServicer_to_server
    return Servicer(SERVICE_NAME, lambda server: add(servicer, server), service_methods=("StreamUserZones",))
