"""The scheduler's view of its peers: auth (time zones), sessions (work time, idle sessions)
and ingest (activity totals, partitions) through their reporting stubs, and ingest's agent
policies (the agent silence allowance) through its service stub."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

import grpc

from services.scheduler.domain import (
    DEFAULT_AGENT_SILENCE_SECONDS,
    ActivityTotal,
    AppUsage,
    IdleSession,
    Thresholds,
    UserWindow,
    UserZone,
    WorkTotal,
)
from workpulse.auth.v1 import auth_reporting_pb2, auth_reporting_pb2_grpc
from workpulse.identity import ServiceIdentity
from workpulse.ingest.v1 import ingest_pb2, ingest_pb2_grpc, ingest_reporting_pb2, ingest_reporting_pb2_grpc
from workpulse.sessions.v1 import sessions_reporting_pb2, sessions_reporting_pb2_grpc
from workpulse.timestamps import to_datetime, to_timestamp

T = TypeVar("T")

# Windows per request (about 1 MB, far below the 8 MiB message limit), and how many such
# requests may run at once (each holds one of the peer's few maintenance connections).
WINDOWS_PER_CALL = 10000
CALLS_IN_PARALLEL = 2
POLICY_CALLS_IN_PARALLEL = 8

logger = logging.getLogger("workpulse.scheduler.mesh")


class Peers(Protocol):
    async def user_zones(self, *, refresh: bool = False) -> list[UserZone]: ...
    async def zone_of(self, organization_id: str, user_id: str) -> str | None: ...
    async def work_totals(self, windows: Sequence[UserWindow], as_of: datetime) -> list[WorkTotal]: ...
    async def activity_totals(self, windows: Sequence[UserWindow], top_apps: int) -> list[ActivityTotal]: ...
    async def idle_sessions(
        self, as_of: datetime, default: Thresholds, by_org: dict[str, Thresholds]
    ) -> list[IdleSession]: ...
    async def ensure_partitions(
        self, as_of: datetime, days_ahead: int, retention_days: int
    ) -> tuple[list[str], list[str]]: ...
    async def agent_silence(self, organization_ids: Collection[str]) -> dict[str, int]: ...


class GrpcPeers:
    """Implements :class:`Peers` over gRPC channels created by the composition root. Time
    zones are cached for ``zone_ttl`` seconds: they change rarely and the idle check runs
    every minute."""

    def __init__(
        self,
        auth: grpc.aio.Channel,
        sessions: grpc.aio.Channel,
        ingest: grpc.aio.Channel,
        *,
        identity: ServiceIdentity | None = None,
        zone_ttl: float = 300.0,
        policy_ttl: float = 60.0,
        timeout: float = 120.0,
    ) -> None:
        self._auth = auth_reporting_pb2_grpc.AuthReportingServiceStub(auth)
        self._sessions = sessions_reporting_pb2_grpc.SessionsReportingServiceStub(sessions)
        self._ingest = ingest_reporting_pb2_grpc.IngestReportingServiceStub(ingest)
        self._policies = ingest_pb2_grpc.IngestServiceStub(ingest)
        self._identity = identity
        self._zone_ttl = zone_ttl
        self._policy_ttl = policy_ttl
        # organization -> (allowance seconds, when it was read)
        self._allowances: dict[str, tuple[int, float]] = {}
        self._timeout = timeout
        self._zones: list[UserZone] = []
        self._index: dict[tuple[str, str], str] = {}
        self._zones_at = -float("inf")
        self._zones_lock = asyncio.Lock()

    def _md(self) -> tuple[tuple[str, str], ...]:
        # grpc.aio registers a client interceptor under one call type only, so the kernel
        # channel's identity interceptor reaches unary calls but not server streams.
        return (("authorization", f"Bearer {self._identity.token()}"),) if self._identity else ()

    async def user_zones(self, *, refresh: bool = False) -> list[UserZone]:
        async with self._zones_lock:
            if refresh or time.monotonic() - self._zones_at > self._zone_ttl:
                found: list[UserZone] = []
                call = self._auth.StreamUserZones(
                    auth_reporting_pb2.StreamUserZonesRequest(), timeout=self._timeout, metadata=self._md()
                )
                async for reply in call:
                    found.extend(
                        UserZone.effective(u.organization_id, u.user_id, u.user_timezone, u.organization_timezone)
                        for u in reply.users
                    )
                self._zones, self._zones_at = found, time.monotonic()
                self._index = {(z.organization_id, z.user_id): z.timezone for z in found}
            return self._zones

    async def zone_of(self, organization_id: str, user_id: str) -> str | None:
        """The user's zone, or None when auth knows no such user in that organization. A
        user the cache does not hold (newer than it, or nobody) costs one point read of
        that user, not a refresh of every tenant's users: new users appear at once."""
        await self.user_zones()
        found = self._index.get((organization_id, user_id))
        if found is None:
            request = auth_reporting_pb2.StreamUserZonesRequest(organization_id=organization_id, user_ids=[user_id])
            call = self._auth.StreamUserZones(request, timeout=self._timeout, metadata=self._md())
            async for reply in call:
                for u in reply.users:
                    zone = UserZone.effective(u.organization_id, u.user_id, u.user_timezone, u.organization_timezone)
                    found = self._index[(zone.organization_id, zone.user_id)] = zone.timezone
        return found

    async def work_totals(self, windows: Sequence[UserWindow], as_of: datetime) -> list[WorkTotal]:
        async def one(chunk: Sequence[UserWindow]) -> list[WorkTotal]:
            request = sessions_reporting_pb2.StreamWorkTotalsRequest(
                windows=[
                    sessions_reporting_pb2.UserWindow(
                        organization_id=w.organization_id,
                        user_id=w.user_id,
                        start=to_timestamp(w.start),
                        end=to_timestamp(w.end),
                    )
                    for w in chunk
                ],
                as_of=to_timestamp(as_of),
            )
            found: list[WorkTotal] = []
            async for reply in self._sessions.StreamWorkTotals(request, timeout=self._timeout, metadata=self._md()):
                found.extend(
                    WorkTotal(
                        t.organization_id, t.user_id, to_datetime(t.window_start), t.worked_seconds, t.sessions_count
                    )
                    for t in reply.totals
                )
            return found

        return await _chunked(windows, one)

    async def activity_totals(self, windows: Sequence[UserWindow], top_apps: int) -> list[ActivityTotal]:
        async def one(chunk: Sequence[UserWindow]) -> list[ActivityTotal]:
            request = ingest_reporting_pb2.StreamActivityTotalsRequest(
                windows=[
                    ingest_reporting_pb2.UserWindow(
                        organization_id=w.organization_id,
                        user_id=w.user_id,
                        start=to_timestamp(w.start),
                        end=to_timestamp(w.end),
                    )
                    for w in chunk
                ],
                top_apps=top_apps,
            )
            found: list[ActivityTotal] = []
            async for reply in self._ingest.StreamActivityTotals(request, timeout=self._timeout, metadata=self._md()):
                found.extend(
                    ActivityTotal(
                        t.organization_id,
                        t.user_id,
                        to_datetime(t.window_start),
                        t.active_seconds,
                        t.idle_seconds,
                        tuple(AppUsage(a.app_name, a.active_seconds) for a in t.top_apps),
                    )
                    for t in reply.totals
                )
            return found

        return await _chunked(windows, one)

    async def idle_sessions(
        self, as_of: datetime, default: Thresholds, by_org: dict[str, Thresholds]
    ) -> list[IdleSession]:
        request = sessions_reporting_pb2.StreamIdleSessionsRequest(
            as_of=to_timestamp(as_of),
            default_idle_minutes=default.idle_minutes,
            thresholds=[
                sessions_reporting_pb2.IdleThreshold(organization_id=org, idle_minutes=t.idle_minutes)
                for org, t in by_org.items()
            ],
        )
        found: list[IdleSession] = []
        async for reply in self._sessions.StreamIdleSessions(request, timeout=self._timeout, metadata=self._md()):
            columns = (reply.organization_ids, reply.user_ids, reply.session_ids, reply.idle_seconds)
            found.extend(map(IdleSession, *columns, reply.silent_seconds))
        return found

    async def agent_silence(self, organization_ids: Collection[str]) -> dict[str, int]:
        """Each organization's agent silence allowance from its agent policy (ingest), read
        at most once per ``policy_ttl`` seconds: the idle check asks every minute, and only
        for the organizations with idle candidates. The default where ingest cannot say (a
        failure is remembered as long, so an ingest without the RPC is not asked each run)."""
        now = time.monotonic()
        never = (DEFAULT_AGENT_SILENCE_SECONDS, -float("inf"))
        stale = sorted(o for o in organization_ids if now - self._allowances.get(o, never)[1] > self._policy_ttl)
        gate = asyncio.Semaphore(POLICY_CALLS_IN_PARALLEL)
        failed: list[str] = []

        async def one(org: str) -> tuple[str, int]:
            request = ingest_pb2.GetOrganizationAgentPolicyRequest(organization_id=org)
            async with gate:
                try:
                    reply = await self._policies.GetOrganizationAgentPolicy(request, timeout=min(self._timeout, 10.0))
                except grpc.aio.AioRpcError as exc:
                    failed.append(exc.code().name)
                    return org, DEFAULT_AGENT_SILENCE_SECONDS
            chosen = reply.policy.defaults
            return org, chosen.agent_silence_seconds if chosen.HasField("agent_silence_seconds") else never[0]

        for org, seconds in await asyncio.gather(*(one(o) for o in stale)):
            self._allowances[org] = (seconds, now)
        if failed:
            codes = ", ".join(sorted(set(failed)))
            logger.warning("%d agent policies unreadable (%s): the default allowance applies", len(failed), codes)
        return {o: self._allowances[o][0] for o in organization_ids}

    async def ensure_partitions(
        self, as_of: datetime, days_ahead: int, retention_days: int
    ) -> tuple[list[str], list[str]]:
        reply = await self._ingest.EnsurePartitions(
            ingest_reporting_pb2.EnsurePartitionsRequest(
                as_of=to_timestamp(as_of), days_ahead=days_ahead, retention_days=retention_days
            ),
            timeout=self._timeout,
        )
        return list(reply.created), list(reply.dropped)


async def _chunked(
    windows: Sequence[UserWindow], call: Callable[[Sequence[UserWindow]], Awaitable[list[T]]]
) -> list[T]:
    # In key order, the peers' per-user index range scans walk their indexes forward.
    ordered = sorted(windows, key=lambda w: (w.organization_id, w.user_id, w.start))
    chunks = [ordered[i : i + WINDOWS_PER_CALL] for i in range(0, len(ordered), WINDOWS_PER_CALL)]
    gate = asyncio.Semaphore(CALLS_IN_PARALLEL)

    async def limited(chunk: Sequence[UserWindow]) -> list[T]:
        async with gate:
            return await call(chunk)

    found: list[T] = []
    for part in await asyncio.gather(*(limited(c) for c in chunks)):
        found.extend(part)
    return found
