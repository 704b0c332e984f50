"""RealtimeService over gRPC: unpack, call the use case, pack."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from services.realtime import use_cases
from services.realtime.domain import Event, Keepalive, Ready, Resync, StreamItem
from services.realtime.presence import UserPresence
from services.realtime.stream import store_errors
from services.realtime.use_cases import Realtime
from workpulse.interceptors import principal
from workpulse.realtime.v1 import realtime_pb2 as pb
from workpulse.realtime.v1 import realtime_pb2_grpc as pb_grpc


class RealtimeServicer(pb_grpc.RealtimeServiceServicer):
    def __init__(self, rt: Realtime) -> None:
        self._rt = rt

    async def Subscribe(self, request: pb.SubscribeRequest, context: object) -> AsyncIterator[pb.SubscribeResponse]:
        items = use_cases.subscribe(
            self._rt,
            principal(),
            after_id=request.after_id,
            track_presence=request.track_presence,
            connection_id=request.connection_id,
        )
        with store_errors():
            async for item in items:
                yield _pack(item)

    async def GetPresence(self, request: pb.GetPresenceRequest, context: object) -> pb.GetPresenceResponse:
        with store_errors():
            users = await use_cases.get_presence(self._rt, principal(), user_ids=request.user_ids)
        return pb.GetPresenceResponse(users=[_presence(u) for u in users])

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: object) -> pb.HeartbeatResponse:
        with store_errors():
            await use_cases.heartbeat(
                self._rt,
                principal(),
                connection_id=request.connection_id,
                user_id=request.user_id,
                organization_id=request.organization_id,
            )
        return pb.HeartbeatResponse(
            lease_seconds=self._rt.presence.lease_ms // 1000,
            heartbeat_interval_seconds=max(1, int(self._rt.presence.heartbeat_seconds)),
        )

    async def Disconnect(self, request: pb.DisconnectRequest, context: object) -> pb.DisconnectResponse:
        with store_errors():
            await use_cases.disconnect(
                self._rt,
                principal(),
                connection_id=request.connection_id,
                user_id=request.user_id,
                organization_id=request.organization_id,
            )
        return pb.DisconnectResponse()


@functools.lru_cache(maxsize=4096)
def _event(e: Event) -> pb.Event:
    """Built once per event, however many subscribers receive it."""
    return pb.Event(
        id=e.id, type=e.type, organization_id=e.organization_id, timestamp=e.timestamp, data_json=e.data_json
    )


def _pack(item: StreamItem) -> pb.SubscribeResponse:
    if isinstance(item, Ready):
        expires = Timestamp(seconds=item.token_expires_at)
        return pb.SubscribeResponse(
            ready=pb.Ready(
                user_id=item.viewer.user_id,
                organization_id=item.viewer.organization_id,
                role=item.role,
                token_expires_at=expires,
                connection_id=item.connection_id,
            )
        )
    if isinstance(item, Resync):
        return pb.SubscribeResponse(resync=pb.Resync(reason=item.reason, last_id=item.last_id))
    if isinstance(item, Keepalive):
        now = Timestamp()
        now.GetCurrentTime()
        return pb.SubscribeResponse(keepalive=now)
    if len(item) == 1:
        return _single(item[0])
    return pb.SubscribeResponse(events=pb.Events(events=[_event(e) for e in item]))


@functools.lru_cache(maxsize=4096)
def _single(e: Event) -> pb.SubscribeResponse:
    """The usual reply, one event: built once and shared by every subscriber that gets it."""
    return pb.SubscribeResponse(events=pb.Events(events=[_event(e)]))


def _timestamp(iso: str | None) -> Timestamp | None:
    if not iso:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(iso))
    return stamp


def _activity(u: UserPresence) -> pb.Activity.ValueType:
    if u.activity.session_id is None:
        return pb.ACTIVITY_IDLE
    if u.agent_silent:
        return pb.ACTIVITY_AGENT_SILENT
    return pb.ACTIVITY_ACTIVE if u.activity.active else pb.ACTIVITY_IDLE


def _presence(u: UserPresence) -> pb.UserPresence:
    return pb.UserPresence(
        user_id=u.user_id,
        organization_id=u.organization_id,
        activity=_activity(u),
        session_id=u.activity.session_id or "",
        online_since=_timestamp(u.online_since),
        connections=u.connections,
        last_activity_at=_timestamp(u.activity.last_activity_at),
        last_agent_contact_at=_timestamp(u.activity.contact_at if u.activity.session_id else None),
        agent_silence_seconds=u.agent_silence_seconds,
        current_app=(u.activity.current_app or "") if u.activity.session_id else "",
    )
