"""AuthReportingService: the users' time zones for the scheduler (service identities only),
streamed in batches from one query on the maintenance engine. Owned by the scheduler work
(issue 5)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workpulse.auth.v1 import auth_reporting_pb2 as pb
from workpulse.auth.v1 import auth_reporting_pb2_grpc
from workpulse.grpc_server import Servicer

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = "workpulse.auth.v1.AuthReportingService"
DEFAULT_BATCH = 5000

_ZONES = """
select u.organization_id::text, u.id::text, u.timezone, o.timezone
from auth.users u join auth.organizations o on o.id = u.organization_id
where u.status = 'active'
order by u.organization_id, u.id
"""


class AuthReportingServicer(auth_reporting_pb2_grpc.AuthReportingServiceServicer):
    def __init__(self, maintenance: AsyncEngine) -> None:
        self._engine = maintenance

    async def StreamUserZones(
        self, request: pb.StreamUserZonesRequest, context: Context
    ) -> AsyncIterator[pb.StreamUserZonesResponse]:
        async with self._engine.connect() as conn:
            result = await conn.stream(text(_ZONES))
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
