"""Outbox → ingest over ``IngestService.StreamActivity``, until every event is acknowledged.

One stream at a time. Batches (up to ``batch_size`` events of one session, oldest
first) are sent while fewer than ``max_in_flight`` wait for their acknowledgement; the
server stops reading when its own window is full, and ``write`` then waits, so the agent
honours the stream's flow control. An acknowledgement settles its batch's events:
accepted and duplicate ones are removed from the outbox; a refused one is removed too,
counted and logged with its reason (``refused_<reason>``), never the rest of the batch.
A batch acknowledged with UNAVAILABLE or RESOURCE_EXHAUSTED stays and is resent.

A broken stream (UNAVAILABLE, DEADLINE_EXCEEDED, a reset) is reopened after an
exponential backoff with full jitter; whatever was in flight is simply sent again with
the same client event ids (the server counts each once). UNAUTHENTICATED refreshes the
access token first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from agent.outbox import Outbox, StoredEvent
from agent.tokens import TokenKeeper
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc

logger = logging.getLogger("workpulse.agent.uploader")

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
}
# Codes of a batch acknowledged without being stored, that a resend can fix.
_RESEND = {
    grpc.StatusCode.UNAVAILABLE.value[0],
    grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
    grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
    grpc.StatusCode.ABORTED.value[0],
}
_ACTIVITY = {"active": pb.ACTIVITY_TYPE_ACTIVE, "idle": pb.ACTIVITY_TYPE_IDLE}


@dataclass
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog's "full jitter")."""

    base: float = 0.5
    # Short enough that an agent is back within seconds of ingest; the jitter spreads a
    # fleet's reconnections after an outage.
    cap: float = 10.0
    attempt: int = 0

    def next(self) -> float:
        delay = random.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class Link:
    """What ``status`` shows of the connection."""

    state: str = "connecting"
    last_ack_at: float | None = None
    last_error: str | None = None
    policy_version: int | None = None
    sent_batches: int = 0


@dataclass
class _Flight:
    session_id: str
    ids: list[str] = field(default_factory=list)


class Uploader:
    def __init__(
        self,
        outbox: Outbox,
        channel: grpc.aio.Channel,
        tokens: TokenKeeper,
        *,
        on_policy_version: Callable[[int], Awaitable[None]],
        on_session_ended: Callable[[str], None],
        batch_size: int = 500,
        max_in_flight: int = 4,
        ack_timeout: float = 60.0,
    ) -> None:
        self._ack_timeout = ack_timeout
        self._outbox = outbox
        self._stub = ingest_pb2_grpc.IngestServiceStub(channel)
        self._tokens = tokens
        self._on_policy_version = on_policy_version
        self._on_session_ended = on_session_ended
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._wake = asyncio.Event()
        self._backoff = Backoff()
        self.link = Link()

    def wake(self) -> None:
        """New events are in the outbox."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self._stream_once()
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                self.link.state = f"reconnecting ({code.name})"
                self.link.last_error = exc.details() or code.name
                if code is grpc.StatusCode.UNAUTHENTICATED:
                    await self._tokens.refresh(force=True)  # SignedOut ends the agent
                elif code not in RETRYABLE:
                    logger.error(
                        "ingest refused the stream", extra={"fields": {"code": code.name, "details": exc.details()}}
                    )
                delay = self._backoff.next()
                # One warning per outage, not one per attempt (a week offline is 60,000 attempts).
                say = logger.warning if self._backoff.attempt == 1 else logger.debug
                say("stream closed; reconnecting", extra={"fields": {"code": code.name, "in_s": round(delay, 2)}})
                await asyncio.sleep(delay)

    async def _stream_once(self) -> None:
        token = await self._tokens.access()
        call = self._stub.StreamActivity(metadata=(("authorization", f"Bearer {token}"),))
        in_flight: dict[str, _Flight] = {}
        room = asyncio.Semaphore(self._max_in_flight)
        sender = asyncio.create_task(self._send(call, in_flight, room), name="agent-send")
        reading: asyncio.Future[Any] | None = None
        try:
            while True:
                if reading is None:
                    reading = asyncio.ensure_future(call.read())
                # A batch unanswered for ``ack_timeout`` (a server that lost it, a half-open
                # connection) breaks the stream: it is resent on a new one. The read itself
                # is never cancelled (that would cancel the call), only waited for.
                done, _ = await asyncio.wait(
                    {reading, sender}, timeout=self._ack_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if sender in done:
                    sender.result()  # its failure (the stream broke while writing) ends this stream
                    raise _broken("the sender stopped")
                if reading not in done:
                    if in_flight:
                        raise _broken(f"no acknowledgement within {self._ack_timeout:.0f} s")
                    continue
                ack, reading = reading.result(), None
                if not isinstance(ack, pb.StreamActivityResponse):  # grpc.aio.EOF
                    raise _broken("the server ended the stream")
                if self.link.state != "connected":
                    self.link.state = "connected"
                    self._backoff.reset()
                flight = in_flight.pop(ack.batch_id, None)
                if flight is not None:
                    room.release()
                    await self._settle(flight, ack)
        finally:
            sender.cancel()
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await sender
            if reading is not None:
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await reading

    async def _send(
        self,
        call: grpc.aio.StreamStreamCall[pb.StreamActivityRequest, pb.StreamActivityResponse],
        in_flight: dict[str, _Flight],
        room: asyncio.Semaphore,
    ) -> None:
        while True:
            await room.acquire()
            batch = self._next_batch(in_flight)
            while batch is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                batch = self._next_batch(in_flight)
            session_id, events = batch
            request = pb.StreamActivityRequest(
                batch_id=str(uuid.uuid4()), session_id=session_id, events=[_event(e) for e in events]
            )
            request.agent_time.FromNanoseconds(time.time_ns())
            in_flight[request.batch_id] = _Flight(session_id, [e.client_event_id for e in events])
            await call.write(request)
            self.link.sent_batches += 1

    def _next_batch(self, in_flight: dict[str, _Flight]) -> tuple[str, list[StoredEvent]] | None:
        busy = {i for f in in_flight.values() for i in f.ids}
        # The oldest event's session first: two index reads, however long the backlog (a
        # week offline); the scan of every session only when that one is all in flight.
        oldest = self._outbox.pending(self._batch_size, exclude=busy)
        if oldest:
            return oldest[0].session_id, oldest
        for session_id in self._outbox.sessions():
            events = self._outbox.pending(self._batch_size, exclude=busy, session_id=session_id)
            if events:
                return session_id, events
        return None

    async def _settle(self, flight: _Flight, ack: pb.StreamActivityResponse) -> None:
        self.link.last_ack_at = time.time()
        if ack.policy_version and ack.policy_version != self.link.policy_version:
            await self._on_policy_version(ack.policy_version)
        if ack.status_code in _RESEND:
            logger.warning(
                "batch not stored; resending",
                extra={"fields": {"code": ack.status_code, "message": ack.status_message}},
            )
            await asyncio.sleep(self._backoff.next())
            self.wake()
            return
        if ack.status_code != 0:
            # The batch as a whole can never be stored (its session is unknown or not ours,
            # or it is malformed): its events are dropped with the reason counted.
            reason = grpc.StatusCode.NOT_FOUND.name if ack.status_code == 5 else f"status_{ack.status_code}"
            self._outbox.remove(flight.ids)
            self._outbox.count(f"refused_{reason.lower()}", len(flight.ids))
            logger.error(
                "batch refused; its events are dropped",
                extra={
                    "fields": {
                        "session_id": flight.session_id,
                        "code": ack.status_code,
                        "message": ack.status_message,
                        "events": len(flight.ids),
                    }
                },
            )
            if ack.status_code in (5, 9):
                self._on_session_ended(flight.session_id)
            return
        ended = False
        for result in ack.results:
            if result.status == pb.EVENT_STATUS_REJECTED:
                name = pb.RejectReason.Name(result.reason).removeprefix("REJECT_REASON_").lower()
                self._outbox.count(f"refused_{name}")
                logger.warning(
                    "event refused",
                    extra={
                        "fields": {"client_event_id": result.client_event_id, "reason": name, "message": result.message}
                    },
                )
                ended |= result.reason == pb.REJECT_REASON_AFTER_SESSION_END
        self._outbox.remove(flight.ids)
        if ack.accepted:
            self._outbox.count("accepted", ack.accepted)
        if ack.duplicate:
            self._outbox.count("duplicate", ack.duplicate)
        if ended or (ack.HasField("session") and ack.session.status == "stopped"):
            self._on_session_ended(flight.session_id)


def _event(e: StoredEvent) -> pb.ActivityEvent:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(e.started_at * 1e9))
    return pb.ActivityEvent(
        activity_type=_ACTIVITY[e.activity],
        duration_seconds=e.duration,
        app_name=e.app,
        title=e.title,
        url=e.url,
        timestamp=stamp,
        client_event_id=e.client_event_id,
    )


def _broken(details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)
