"""StreamActivity: one acknowledgement per batch, bad batches answered without breaking the
stream, and a bounded number of batches read ahead (flow control)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc

from services.ingest.stream import acknowledged
from tests.ingest.conftest import Stack, UserFactory, event
from workpulse.ingest.v1 import ingest_pb2 as pb


async def _send(
    stack: Stack, token_md: tuple[tuple[str, str], ...], batches: list[pb.StreamActivityRequest]
) -> list[pb.StreamActivityResponse]:
    async def requests() -> AsyncIterator[pb.StreamActivityRequest]:
        for b in batches:
            yield b

    return [ack async for ack in stack.ingest.StreamActivity(requests(), metadata=token_md)]


async def test_each_batch_is_acknowledged_and_bad_batches_do_not_break_the_stream(
    stack: Stack, make_user: UserFactory
) -> None:
    user = make_user()
    session = await stack.start(user)
    now = datetime.now(UTC)
    good = [event(10, at=now - timedelta(seconds=n), client_id=f"g{n}") for n in range(5)]
    batches = [
        pb.StreamActivityRequest(batch_id="b1", session_id=session.id, events=good),
        pb.StreamActivityRequest(batch_id="", session_id=session.id, events=good),
        pb.StreamActivityRequest(batch_id="b3", session_id=session.id, events=[event(1, at=now)] * 1001),
        pb.StreamActivityRequest(batch_id="b4", session_id=str(uuid.uuid4()), events=good),
        pb.StreamActivityRequest(batch_id="b5", session_id=session.id, events=[*good, event(-1, at=now)]),
    ]
    acks = {a.batch_id: a for a in await _send(stack, user.md, batches)}
    b1, b5 = acks["b1"], acks["b5"]
    assert acks[""].status_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert acks["b3"].status_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert acks["b4"].status_code == grpc.StatusCode.NOT_FOUND.value[0]
    # b1 and b5 carry the same five events and may run concurrently: counted once overall.
    assert (b1.status_code, b5.status_code) == (0, 0)
    assert (b1.accepted + b5.accepted, b1.duplicate + b5.duplicate, b1.rejected + b5.rejected) == (5, 5, 1)
    assert b5.results[-1].reason == pb.REJECT_REASON_INVALID_DURATION
    assert max(b1.session.total_active_seconds, b5.session.total_active_seconds) == 50


async def test_the_stream_needs_a_token(stack: Stack) -> None:
    async def nothing() -> AsyncIterator[pb.StreamActivityRequest]:
        return
        yield

    call = stack.ingest.StreamActivity(nothing())
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
    else:
        raise AssertionError("an anonymous stream was accepted")


async def test_no_more_than_the_allowed_batches_are_read_ahead_of_their_acknowledgement() -> None:
    pulled = 0
    release = asyncio.Event()

    async def fast_agent() -> AsyncIterator[int]:
        nonlocal pulled
        for n in range(100):
            pulled += 1
            yield n

    async def slow_store(n: int) -> int:
        await release.wait()
        return n

    acks = acknowledged(fast_agent(), slow_store, max_in_flight=3)
    first = asyncio.create_task(anext(acks))
    await asyncio.sleep(0.05)
    assert pulled == 3  # the agent is held back while three batches are unacknowledged
    release.set()
    rest = [await first] + [n async for n in acks]
    assert sorted(rest) == list(range(100))
