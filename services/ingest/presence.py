"""Agent presence: while a desktop agent's activity stream is open, its user is online.

The stream holds a presence lease in the realtime service (Heartbeat, renewed at the
interval realtime asks for; Disconnect when the stream ends). Presence is best-effort
here: if realtime is down, ingest keeps accepting activity and the lease simply lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import grpc

from workpulse.identity import Principal
from workpulse.realtime.v1 import realtime_pb2, realtime_pb2_grpc

logger = logging.getLogger("workpulse.ingest.presence")


class AgentPresence:
    def __init__(self, realtime: realtime_pb2_grpc.RealtimeServiceAsyncStub | None, *, timeout: float = 2.0) -> None:
        self._realtime = realtime
        self._timeout = timeout

    @contextlib.asynccontextmanager
    async def connected(self, caller: Principal) -> AsyncIterator[None]:
        if self._realtime is None or caller.organization_id is None:
            yield
            return
        lease = realtime_pb2.HeartbeatRequest(
            connection_id=f"agent-{uuid.uuid4()}", user_id=caller.subject, organization_id=caller.organization_id
        )
        renewing = asyncio.create_task(self._renew(lease), name="agent-presence")
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await self._disconnect(lease)

    async def _renew(self, lease: realtime_pb2.HeartbeatRequest) -> None:
        assert self._realtime is not None
        interval = 5.0
        while True:
            try:
                reply = await self._realtime.Heartbeat(lease, timeout=self._timeout)
                interval = max(1.0, float(reply.heartbeat_interval_seconds or interval))
            except grpc.aio.AioRpcError as exc:
                logger.warning("presence heartbeat failed", extra={"fields": {"code": exc.code().name}})
            await asyncio.sleep(interval)

    async def _disconnect(self, lease: realtime_pb2.HeartbeatRequest) -> None:
        assert self._realtime is not None
        request = realtime_pb2.DisconnectRequest(
            connection_id=lease.connection_id, user_id=lease.user_id, organization_id=lease.organization_id
        )
        try:
            await self._realtime.Disconnect(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            logger.warning("presence disconnect failed", extra={"fields": {"code": exc.code().name}})
