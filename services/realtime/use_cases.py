"""Use cases of the realtime service: plain async functions over the hub and presence."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from services.realtime.domain import Event, Keepalive, Ready, Resync, StreamItem, Viewer, parse_stream_id
from services.realtime.hub import EventHub
from services.realtime.presence import PresenceTracker, UserPresence
from workpulse.errors import InvalidArgument, PermissionDenied, Unauthenticated, Unavailable
from workpulse.identity import Principal

MAX_CONNECTION_ID = 128
MAX_PRESENCE_USERS = 500  # GetPresenceRequest.user_ids
REPLAY_CHUNK = 100
STARTUP_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class Realtime:
    """What the use cases work with, wired by the composition root."""

    hub: EventHub
    presence: PresenceTracker
    keepalive_seconds: float
    replay_limit: int


def viewer_of(caller: Principal) -> Viewer:
    if caller.is_service:
        raise PermissionDenied("event streams are for users")
    return Viewer(caller.subject, caller.tenant(), caller.sees_organization)


def _connection_id(raw: str) -> str:
    if not raw:
        return uuid.uuid4().hex
    if len(raw) > MAX_CONNECTION_ID or "|" in raw or not raw.isprintable():
        raise InvalidArgument("connection_id: at most 128 printable characters, no '|'", field="connection_id")
    return raw


async def subscribe(
    rt: Realtime, caller: Principal, *, after_id: str, track_presence: bool, connection_id: str
) -> AsyncIterator[StreamItem]:
    """The caller's events: ready, then the missed ones after ``after_id``, then live ones."""
    viewer = viewer_of(caller)
    connection = _connection_id(connection_id)
    if after_id:
        try:
            parse_stream_id(after_id)
        except ValueError:
            raise InvalidArgument("after_id: not an event id", field="after_id") from None
    try:
        await asyncio.wait_for(rt.hub.started.wait(), STARTUP_WAIT_SECONDS)
    except TimeoutError:
        raise Unavailable("the events stream is not reachable yet") from None
    # Registered before the replay is read, so nothing falls between replay and live.
    sub = rt.hub.subscribe(viewer)
    joined = False
    try:
        if track_presence:
            await rt.presence.join(viewer.organization_id, viewer.user_id, connection)
            joined = True
        yield Ready(viewer, caller.role, caller.expires_at, connection)
        boundary = (0, 0)
        last_id = after_id
        if after_id:
            replay = await rt.hub.stream.replay(after_id, limit=rt.replay_limit)
            boundary = parse_stream_id(replay.boundary)
            missed = [e for e in replay.events if viewer.may_see(e)]
            if replay.gap:
                yield Resync("events after this id are no longer retained", after_id)
            elif missed:
                last_id = missed[-1].id
                for start in range(0, len(missed), REPLAY_CHUNK):  # keeps each message small
                    yield missed[start : start + REPLAY_CHUNK]
        while True:
            remaining = caller.expires_at - time.time()
            if remaining <= 0:
                raise Unauthenticated("token expired")
            try:
                async with asyncio.timeout(min(rt.keepalive_seconds, remaining)):  # no task per wait
                    await sub.wake.wait()
            except TimeoutError:
                if time.time() < caller.expires_at:
                    yield Keepalive()
                continue
            if sub.overflowed:
                yield Resync("subscriber fell too far behind", last_id)
                return
            batch = _after(sub.take(), boundary)
            if batch:
                last_id = batch[-1].id
                yield batch
    finally:
        rt.hub.unsubscribe(sub)
        if joined:
            # The stream may be ending by cancellation: finish the release regardless.
            await asyncio.shield(rt.presence.leave(viewer.organization_id, viewer.user_id, connection))


def _after(events: list[Event], boundary: tuple[int, int]) -> list[Event]:
    if boundary == (0, 0):
        return events
    return [e for e in events if e.position > boundary]


def _uuid(value: str, name: str) -> str:
    """``value`` in canonical form (ids compare as stored); INVALID_ARGUMENT naming ``name``."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{name}: must be a UUID", field=name) from None


async def get_presence(rt: Realtime, caller: Principal, *, user_ids: Sequence[str] = ()) -> list[UserPresence]:
    """The caller's audience online, only ``user_ids`` when given. An employee's audience
    is themselves; an id of someone outside it is left out like one of nobody, so the
    answer never tells whether another tenant's (or member's) id exists."""
    viewer = viewer_of(caller)
    if len(user_ids) > MAX_PRESENCE_USERS:
        raise InvalidArgument(f"user_ids: at most {MAX_PRESENCE_USERS} ids", field="user_ids")
    named = [_uuid(u, "user_ids") for u in user_ids]
    if viewer.sees_organization:
        only = named or None
    else:
        only = [viewer.user_id] if not named or viewer.user_id in named else []
    return await rt.presence.store.online(viewer.organization_id, only)


def _lease_owner(caller: Principal, user_id: str, organization_id: str) -> tuple[str, str]:
    """Users hold leases for themselves; services (e.g. ingest for an agent) name the user."""
    if caller.is_service:
        for value, name in ((user_id, "user_id"), (organization_id, "organization_id")):
            try:
                uuid.UUID(value)
            except ValueError:
                raise InvalidArgument(f"{name}: a UUID is required for service callers", field=name) from None
        return organization_id, user_id
    if user_id and user_id != caller.subject:
        raise PermissionDenied("users hold presence leases only for themselves")
    return caller.tenant(), caller.subject


async def heartbeat(rt: Realtime, caller: Principal, *, connection_id: str, user_id: str, organization_id: str) -> None:
    if not connection_id:
        raise InvalidArgument("connection_id is required", field="connection_id")
    org, user = _lease_owner(caller, user_id, organization_id)
    await rt.presence.store.touch(org, user, _connection_id(connection_id), rt.presence.lease_ms)


async def disconnect(
    rt: Realtime, caller: Principal, *, connection_id: str, user_id: str, organization_id: str
) -> None:
    if not connection_id:
        raise InvalidArgument("connection_id is required", field="connection_id")
    org, user = _lease_owner(caller, user_id, organization_id)
    await rt.presence.store.release(org, user, _connection_id(connection_id), rt.presence.grace_ms)
