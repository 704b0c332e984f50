"""The uploader against bad server answers: refusals, failed batches, lost and broken streams.

The server here is a real gRPC server on a real port, scripted to misbehave the ways a
real ingest (or what sits between) can: per-event refusals, a batch acknowledged with
UNAVAILABLE or NOT_FOUND, a stream aborted mid-way, an acknowledgement that never comes.
The real ingest is what the end-to-end tests stream to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.outbox import Outbox, StoredEvent
from agent.uploader import Uploader
from tests.support import eventually
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc

Behaviour = Callable[[pb.StreamActivityRequest], Any]


def accept(batch: pb.StreamActivityRequest) -> pb.StreamActivityResponse:
    return pb.StreamActivityResponse(batch_id=batch.batch_id, accepted=len(batch.events), policy_version=1)


@dataclass
class ScriptedIngest(ingest_pb2_grpc.IngestServiceServicer):
    script: list[Behaviour] = field(default_factory=list)
    seen: list[pb.StreamActivityRequest] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    streams: int = 0

    async def StreamActivity(
        self, request_iterator: AsyncIterator[pb.StreamActivityRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamActivityResponse]:
        self.streams += 1
        self.tokens.append(dict(context.invocation_metadata())["authorization"])  # type: ignore[arg-type]
        async for batch in request_iterator:
            self.seen.append(batch)
            behaviour = self.script.pop(0) if self.script else accept
            answer = behaviour(batch)
            if isinstance(answer, grpc.StatusCode):
                await context.abort(answer, "scripted failure")
            if answer is not None:
                yield answer


class FixedTokens:
    """The uploader's token source (the real TokenKeeper is tested against the mesh)."""

    def __init__(self) -> None:
        self.refreshes = 0

    async def access(self) -> str:
        return f"token-{self.refreshes}"

    async def refresh(self, *, force: bool = False) -> None:
        self.refreshes += 1


@dataclass
class Rig:
    ingest: ScriptedIngest
    outbox: Outbox
    uploader: Uploader
    tokens: FixedTokens
    ended: list[str]
    versions: list[int]

    def add(self, n: int, session: str = "s1", start: int = 0) -> list[str]:
        events = [
            StoredEvent(f"e{start + i}", session, "active", 1_700_000_000.0 + i, 1, "App", "", "") for i in range(n)
        ]
        self.outbox.append(events)
        self.uploader.wake()
        return [e.client_event_id for e in events]

    async def until(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        async def checked() -> bool:
            return check()

        await eventually(checked, timeout=timeout, interval=0.02)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    ingest = ScriptedIngest()
    server = grpc.aio.server()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    outbox = Outbox(tmp_path / "o.sqlite3")
    ended: list[str] = []
    versions: list[int] = []

    async def policy_version(v: int) -> None:
        versions.append(v)
        uploader.link.policy_version = v

    tokens = FixedTokens()
    uploader = Uploader(
        outbox,
        channel,
        tokens,
        on_policy_version=policy_version,  # type: ignore[arg-type]
        on_session_ended=ended.append,
        batch_size=10,
        ack_timeout=1.0,
    )
    uploader._backoff.base = 0.01  # reconnect at once: these tests are about what is resent
    task = asyncio.create_task(uploader.run())
    yield Rig(ingest, outbox, uploader, tokens, ended, versions)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await channel.close()
    await server.stop(None)
    outbox.close()


def _ids(batches: list[pb.StreamActivityRequest]) -> list[str]:
    return [e.client_event_id for b in batches for e in b.events]


async def test_acknowledged_events_leave_the_outbox_in_batches_of_one_session(rig: Rig) -> None:
    a = rig.add(15, "s1")
    b = rig.add(3, "s2", start=100)
    await rig.until(lambda: rig.outbox.depth() == 0)
    assert sorted(_ids(rig.ingest.seen)) == sorted(a + b)
    assert all(len({b.session_id}) == 1 and len(b.events) <= 10 for b in rig.ingest.seen)
    assert rig.outbox.counters()["accepted"] == 18
    assert rig.versions == [1]  # the policy version was noticed once
    assert rig.uploader.link.state == "connected"
    first = rig.ingest.seen[0]
    assert first.HasField("agent_time") and first.events[0].timestamp.seconds == 1_700_000_000


async def test_a_refused_event_is_dropped_and_counted_the_rest_stored(rig: Rig) -> None:
    def refuse_second(batch: pb.StreamActivityRequest) -> pb.StreamActivityResponse:
        reply = accept(batch)
        reply.accepted -= 1
        reply.rejected = 1
        reply.results.append(
            pb.EventResult(
                index=1,
                client_event_id=batch.events[1].client_event_id,
                status=pb.EVENT_STATUS_REJECTED,
                reason=pb.REJECT_REASON_TIMESTAMP_IN_FUTURE,
                message="timestamp: future",
            )
        )
        return reply

    rig.ingest.script = [refuse_second]
    rig.add(3)
    await rig.until(lambda: rig.outbox.depth() == 0)
    counters = rig.outbox.counters()
    assert (counters["accepted"], counters["refused_timestamp_in_future"]) == (2, 1)
    assert len(rig.ingest.seen) == 1  # nothing resent: the refusal is final
    assert rig.ended == []


async def test_after_the_sessions_end_the_session_is_reported_ended(rig: Rig) -> None:
    def after_end(batch: pb.StreamActivityRequest) -> pb.StreamActivityResponse:
        return pb.StreamActivityResponse(
            batch_id=batch.batch_id,
            rejected=1,
            results=[
                pb.EventResult(index=0, status=pb.EVENT_STATUS_REJECTED, reason=pb.REJECT_REASON_AFTER_SESSION_END)
            ],
        )

    rig.ingest.script = [after_end]
    rig.add(1)
    await rig.until(lambda: rig.ended == ["s1"])
    assert rig.outbox.depth() == 0


async def test_a_batch_acknowledged_unavailable_is_resent_with_the_same_ids(rig: Rig) -> None:
    rig.ingest.script = [lambda b: pb.StreamActivityResponse(batch_id=b.batch_id, status_code=14, status_message="db")]
    ids = rig.add(4)
    await rig.until(lambda: rig.outbox.depth() == 0)
    first, second = rig.ingest.seen[0], rig.ingest.seen[1]
    assert _ids([first]) == _ids([second]) == ids
    assert first.batch_id != second.batch_id


async def test_a_batch_of_an_unknown_session_is_dropped_counted_and_ends_the_session(rig: Rig) -> None:
    rig.ingest.script = [lambda b: pb.StreamActivityResponse(batch_id=b.batch_id, status_code=5, status_message="nf")]
    rig.add(2, "gone")
    await rig.until(lambda: rig.outbox.depth() == 0)
    assert rig.outbox.counters()["refused_not_found"] == 2
    assert rig.ended == ["gone"]


async def test_a_stream_aborted_mid_way_reconnects_and_resends_what_was_in_flight(rig: Rig) -> None:
    rig.ingest.script = [lambda b: grpc.StatusCode.UNAVAILABLE]
    ids = rig.add(5)
    await rig.until(lambda: rig.outbox.depth() == 0)
    assert rig.ingest.streams == 2
    assert _ids(rig.ingest.seen) == ids + ids


async def test_an_acknowledgement_that_never_comes_breaks_the_stream_and_the_batch_is_resent(rig: Rig) -> None:
    rig.ingest.script = [lambda b: None, lambda b: pb.StreamActivityResponse(batch_id="not-a-batch-we-sent")]
    ids = rig.add(3)
    await rig.until(lambda: rig.outbox.depth() == 0, timeout=15)
    assert rig.ingest.streams >= 2
    assert _ids(rig.ingest.seen)[-3:] == ids
    assert rig.outbox.counters()["accepted"] == 3


async def test_unauthenticated_refreshes_the_token_before_reconnecting(rig: Rig) -> None:
    rig.ingest.script = [lambda b: grpc.StatusCode.UNAUTHENTICATED]
    rig.add(1)
    await rig.until(lambda: rig.outbox.depth() == 0)
    assert rig.tokens.refreshes == 1
    assert rig.ingest.tokens == ["Bearer token-0", "Bearer token-1"]
