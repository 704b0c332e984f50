"""The sessions service as ingest sees it: session windows (briefly cached) and totals hand-offs.

Calls carry ingest's service identity and name the tenant explicitly; the tenant always
comes from the caller's verified token and ownership is checked by the use case, so the
cache can be shared by every request of the session's owner. A session's owner and start
never change; its end is enforced by the store, so a cached window decides nothing final.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import grpc

from services.ingest.domain import SessionTotals, SessionWindow
from services.ingest.repository import PendingHandoff
from workpulse.errors import InvalidArgument, NotFound, Unavailable, WorkPulseError
from workpulse.sessions.v1 import sessions_pb2 as spb
from workpulse.sessions.v1 import sessions_pb2_grpc as spb_grpc


def _moment(message: spb.Session, name: str) -> datetime | None:
    if not message.HasField(name):  # type: ignore[arg-type]
        return None
    value: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
    return value


def totals_of(session: spb.Session) -> SessionTotals:
    return SessionTotals(
        session_id=session.id,
        total_active_seconds=session.total_active_seconds,
        total_idle_seconds=session.total_idle_seconds,
        last_activity_at=_moment(session, "last_activity_at"),
        version=session.version,
        status=session.status,
    )


def _error(exc: grpc.aio.AioRpcError) -> WorkPulseError:
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound("session not found")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(exc.details() or "invalid session", field="session_id")
    return Unavailable(f"sessions service unavailable ({code.name.lower()}); retry later")


_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)
R = TypeVar("R")


async def _call(attempt: Callable[[], Awaitable[R]], attempts: int = 3) -> R:
    """Calls sessions, retrying transient failures with jittered backoff (every call here
    is a read or an idempotent hand-off, so a retry never counts anything twice)."""
    for n in range(attempts):
        try:
            return await attempt()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _TRANSIENT or n == attempts - 1:
                raise _error(exc) from None
            await asyncio.sleep(random.uniform(0.5, 1.0) * 0.05 * 2**n)
    raise AssertionError("unreachable")


class SessionsPeer:
    def __init__(
        self,
        stub: spb_grpc.SessionsServiceAsyncStub,
        *,
        active_ttl: float = 1.0,
        stopped_ttl: float = 60.0,
        timeout: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._stub = stub
        self._active_ttl = active_ttl
        self._stopped_ttl = stopped_ttl
        self._timeout = timeout
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, SessionWindow]] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[SessionWindow]] = {}

    async def window(self, organization_id: str, session_id: str, *, fresh: bool = False) -> SessionWindow:
        """The session's owner and time window; concurrent misses share one call.
        ``fresh``: not from the cache (an active copy may predate a stop)."""
        key = (organization_id, session_id)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic() and not fresh:
            return cached[1]
        loading = self._loading.get(key)
        if loading is None:
            # A task of its own, so a caller that gives up does not cancel the others' read.
            loading = asyncio.ensure_future(self._fetch(organization_id, session_id))
            self._loading[key] = loading
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _fetch(self, organization_id: str, session_id: str) -> SessionWindow:
        observed = self._clock()
        request = spb.GetSessionRequest(session_id=session_id, organization_id=organization_id)
        reply = await _call(lambda: self._stub.GetSession(request, timeout=self._timeout))
        s = reply.session
        start = _moment(s, "start_time")
        window = SessionWindow(
            organization_id=s.organization_id,
            session_id=s.id,
            user_id=s.user_id,
            start_time=start or observed,
            end_time=_moment(s, "end_time"),
        )
        ttl = self._stopped_ttl if window.stopped else self._active_ttl
        if len(self._cache) > 50_000:
            now = time.monotonic()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[(organization_id, session_id)] = (time.monotonic() + ttl, window)
        return window

    async def totals(self, organization_id: str, session_id: str) -> SessionTotals:
        request = spb.GetSessionRequest(session_id=session_id, organization_id=organization_id)
        reply = await _call(lambda: self._stub.GetSession(request, timeout=self._timeout))
        return totals_of(reply.session)

    async def apply(self, handoff: PendingHandoff) -> SessionTotals:
        """Hands a delta to sessions; applying the same hand-off twice counts it once."""
        request = _apply_request(handoff)
        reply = await _call(lambda: self._stub.ApplyActivity(request, timeout=self._timeout))
        return totals_of(reply.session)

    async def apply_many(self, handoffs: list[PendingHandoff]) -> list[SessionTotals | NotFound]:
        """Hands many deltas (of any organizations) to sessions in one call; per hand-off
        the session's totals after it, or NotFound. Each counts once, as :meth:`apply`."""
        request = spb.ApplyActivityBatchRequest(items=[_apply_request(h) for h in handoffs])
        reply = await _call(lambda: self._stub.ApplyActivityBatch(request, timeout=self._timeout))
        if len(reply.results) != len(handoffs):
            raise Unavailable("sessions answered a hand-off batch with the wrong number of results")
        return [NotFound("session not found") if r.not_found else totals_of(r.session) for r in reply.results]


def _apply_request(handoff: PendingHandoff) -> spb.ApplyActivityRequest:
    d = handoff.delta
    request = spb.ApplyActivityRequest(
        organization_id=d.organization_id,
        session_id=d.session_id,
        idempotency_key=handoff.idempotency_key,
        active_seconds=d.active_seconds,
        idle_seconds=d.idle_seconds,
        event_count=d.event_count,
    )
    request.last_activity_at.FromDatetime(d.last_activity_at.astimezone(UTC))
    if d.last_active_at is not None:
        # An event may run past now (its timestamp is its start): the last input is never later.
        request.last_active_at.FromDatetime(min(d.last_active_at, datetime.now(UTC)).astimezone(UTC))
    return request
