"""The on-connect snapshot: a connecting user's active session, as one ``SESSION_UPDATE``,
and, when that session's agent is silent, one ``USER_AGENT_SILENT``.

The original sent its clients ``SESSION_UPDATE`` for the user's active session when they
connected, so they render a running session without asking REST. The gateway asks
sessions through the RPC of ``GET /sessions/active``, with the user's own token, once
realtime has answered ``ready``: the subscription is registered by then, so any change
committed after the read also arrives as an event, and a client that keeps the highest
``version`` of a session never ends on an older state than the one committed.

The snapshot is not an entry of the events stream: its ``id`` is null (frame and data),
so it never moves a client's resume position, and it is sent on each connection (not on the
gateway's own re-subscriptions). Its payload has exactly the keys of a relayed
SESSION_UPDATE (sessions' ``WorkSession.event_payload``, a test holds the two equal).

The agent silence is read from realtime's ``GetPresence`` (the user's own entry): a user
who connects while their agent is silent missed the USER_AGENT_SILENT that said so, and
nothing else would tell them until the agent reports again. Its payload has the keys of
the one realtime publishes.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.errors import HTTPError
from gateway.peers import Peers
from workpulse.realtime.v1 import realtime_pb2, realtime_pb2_grpc
from workpulse.sessions.v1 import sessions_pb2, sessions_pb2_grpc

logger = logging.getLogger("workpulse.gateway.realtime")

SESSION_UPDATE = "SESSION_UPDATE"
USER_AGENT_SILENT = "USER_AGENT_SILENT"
# How clients name GetPresence's activity (docs/API.md, Presence).
ACTIVITY_NAMES: dict[realtime_pb2.Activity.ValueType, str] = {
    realtime_pb2.ACTIVITY_ACTIVE: "active",
    realtime_pb2.ACTIVITY_IDLE: "idle",
    realtime_pb2.ACTIVITY_AGENT_SILENT: "agent_silent",
}
# The snapshot is sent before any event of the connection: a slow sessions service may
# hold them back this long at most, then the connection goes on without it.
SNAPSHOT_TIMEOUT_SECONDS = 3.0


def user_metadata(peers: Peers, token: str, client_address: str) -> list[tuple[str, str]]:
    """What a call made for a browser connection carries: the user's token (services
    verify it and scope by it), the browser's address and the gateway's identity."""
    metadata = [("authorization", f"Bearer {token}"), ("x-client-address", client_address)]
    if peers.identity is not None:
        metadata.append(("x-service-authorization", peers.identity.token()))
    return metadata


def _iso(stamp: Timestamp, present: bool = True) -> str | None:
    """Microseconds always, as sessions writes its event payloads, so both read alike."""
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if present else None


def session_update_payload(session: sessions_pb2.Session) -> dict[str, Any]:
    """The payload sessions publishes for ``session`` (flat fields and ``session``)."""
    start, end = _iso(session.start_time), _iso(session.end_time, session.HasField("end_time"))
    project = session.project_id or None
    return {
        "sessionId": session.id,
        "userId": session.user_id,
        "organizationId": session.organization_id,
        "projectId": project,
        "total_active_seconds": session.total_active_seconds,
        "total_idle_seconds": session.total_idle_seconds,
        "status": session.status,
        "version": session.version,
        "startTime": start,
        "endTime": end,
        "session": {
            "id": session.id,
            "user_id": session.user_id,
            "organization_id": session.organization_id,
            "project_id": project,
            "start_time": start,
            "end_time": end,
            "status": session.status,
            "total_active_seconds": session.total_active_seconds,
            "total_idle_seconds": session.total_idle_seconds,
            "last_activity_at": _iso(session.last_activity_at, session.HasField("last_activity_at")),
            "version": session.version,
        },
    }


async def active_session_update(peers: Peers, token: str, client_address: str, user_id: str) -> dict[str, Any] | None:
    """The snapshot's ``data`` (payload, null ``id``, ``timestamp`` of the read) for the
    user's own active session; None when they have none or sessions cannot tell now."""
    try:
        stub: sessions_pb2_grpc.SessionsServiceAsyncStub = peers.stub("sessions", sessions_pb2_grpc.SessionsServiceStub)
    except HTTPError:
        return None  # a gateway deployed without sessions (live events only) has nothing to show
    try:
        reply = await stub.ListActiveSessions(
            sessions_pb2.ListActiveSessionsRequest(),
            metadata=user_metadata(peers, token, client_address),
            timeout=SNAPSHOT_TIMEOUT_SECONDS,
        )
    except grpc.aio.AioRpcError as exc:
        # Live events matter more than the snapshot: the connection goes on without it.
        logger.warning("no on-connect session snapshot: %s %s", exc.code().name, exc.details())
        return None
    # Managers and admins are answered with their organization's sessions: only their own
    # is theirs to show (the others' arrive as events, as for everyone).
    own = next((s for s in reply.sessions if s.user_id == user_id), None)
    if own is None:
        return None
    return {**session_update_payload(own), "id": None, "timestamp": datetime.now(UTC).isoformat()}


def agent_silent_payload(presence: realtime_pb2.UserPresence) -> dict[str, Any]:
    """The USER_AGENT_SILENT payload (without ``timestamp``) of a user GetPresence lists."""
    contact = presence.last_agent_contact_at
    return {
        "userId": presence.user_id,
        "organizationId": presence.organization_id,
        "sessionId": presence.session_id,
        "activity": ACTIVITY_NAMES[presence.activity],
        "lastAgentContactAt": contact.ToDatetime(tzinfo=UTC).isoformat()
        if presence.HasField("last_agent_contact_at")
        else None,
        "agentSilenceSeconds": presence.agent_silence_seconds,
    }


async def agent_silence(peers: Peers, token: str, client_address: str, user_id: str) -> dict[str, Any] | None:
    """The snapshot's USER_AGENT_SILENT ``data`` (null ``id``, ``timestamp`` of the read)
    when the user's own open session's agent is silent; None otherwise or when realtime
    cannot tell now."""
    try:
        stub: realtime_pb2_grpc.RealtimeServiceAsyncStub = peers.stub("realtime", realtime_pb2_grpc.RealtimeServiceStub)
        reply = await stub.GetPresence(
            realtime_pb2.GetPresenceRequest(),
            metadata=user_metadata(peers, token, client_address),
            timeout=SNAPSHOT_TIMEOUT_SECONDS,
        )
    except HTTPError:
        return None
    except grpc.aio.AioRpcError as exc:
        logger.warning("no on-connect agent silence snapshot: %s %s", exc.code().name, exc.details())
        return None
    # Managers are answered with their organization: only their own entry is theirs to show.
    own = next((u for u in reply.users if u.user_id == user_id), None)
    if own is None or own.activity != realtime_pb2.ACTIVITY_AGENT_SILENT:
        return None
    return {**agent_silent_payload(own), "id": None, "timestamp": datetime.now(UTC).isoformat()}


async def on_connect(peers: Peers, token: str, client_address: str, user_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The snapshot's events, in order: the active session, then its agent's silence."""
    session, silence = await asyncio.gather(
        active_session_update(peers, token, client_address, user_id),
        agent_silence(peers, token, client_address, user_id),
    )
    found = [(SESSION_UPDATE, session), (USER_AGENT_SILENT, silence)]
    return [(event, data) for event, data in found if data is not None]
