"""The ingest service as sessions sees it: the place a stop closes a session's activity window."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from workpulse.errors import Unavailable
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc as pb_grpc


class IngestWindows:
    def __init__(self, stub: pb_grpc.IngestServiceAsyncStub, *, timeout: float = 5.0) -> None:
        self._stub = stub
        self._timeout = timeout

    async def close(self, organization_id: str, session_id: str) -> datetime:
        """The session's final end. Idempotent, so a stop that failed may simply be retried;
        an unreachable ingest fails the stop (503) rather than leave its window open."""
        request = pb.CloseSessionRequest(organization_id=organization_id, session_id=session_id)
        try:
            reply = await self._stub.CloseSession(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"ingest unavailable ({exc.code().name.lower()}); retry the stop") from None
        end: datetime = reply.end_time.ToDatetime(tzinfo=UTC)
        return end
