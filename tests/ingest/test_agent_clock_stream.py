"""A stream learns its agent's clock offset from StreamActivityRequest.agent_time (the
smallest difference to the server's clock on arrival) and corrects the timestamps it
receives, by whole seconds and only past 2 s; requests without the agent's clock get the
fixed allowance (INGEST_CLOCK_SKEW_SECONDS, 5 s by default). Through the stack's ingest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.ingest.conftest import Stack, User, UserFactory, event, invariant_violations, stamp
from workpulse.ingest.v1 import ingest_pb2 as pb

TEN_MINUTES = timedelta(minutes=10)


class Agent:
    """A desktop agent whose clock is ``offset`` off the real time, on one stream: each
    batch is sent and its acknowledgement awaited before the next (so what the stream has
    measured when a batch arrives is known)."""

    def __init__(self, stack: Stack, user: User, session_id: str, offset: timedelta, *, sends_clock: bool) -> None:
        self.offset = offset
        self._session_id = session_id
        self._sends_clock = sends_clock
        self._call = stack.ingest.StreamActivity(metadata=user.md)
        self._sent = 0

    def now(self) -> datetime:
        """The agent's clock."""
        return datetime.now(UTC) + self.offset

    async def send(
        self, events: list[pb.ActivityEvent], *, late: timedelta = timedelta(0)
    ) -> pb.StreamActivityResponse:
        """One batch; ``late``: how long it seems to have travelled (its agent_time is that
        much older than the agent's clock)."""
        self._sent += 1
        batch = pb.StreamActivityRequest(batch_id=f"b{self._sent}", session_id=self._session_id, events=events)
        if self._sends_clock:
            batch.agent_time.CopyFrom(stamp(self.now() - late))
        await self._call.write(batch)
        ack = await self._call.read()
        assert isinstance(ack, pb.StreamActivityResponse), ack
        assert (ack.batch_id, ack.status_code) == (batch.batch_id, 0), ack
        return ack

    async def close(self) -> None:
        await self._call.done_writing()
        assert await self._call.read() is grpc.aio.EOF


async def _stored(engine: AsyncEngine, session_id: str) -> dict[str, datetime]:
    """Each stored event of the session: client event id to timestamp."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text('select client_event_id, "timestamp" from ingest.activity_logs where session_id = cast(:sid as uuid)'),
            {"sid": session_id},
        )
        return {str(cid): ts for cid, ts in found}


def _reasons(ack: pb.StreamActivityResponse) -> dict[int, int]:
    return {r.index: r.reason for r in ack.results if r.status == pb.EVENT_STATUS_REJECTED}


@pytest.mark.parametrize("offset", [-TEN_MINUTES, TEN_MINUTES], ids=["behind", "ahead"])
async def test_a_stream_corrects_the_stamps_of_an_agent_ten_minutes_off(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine, offset: timedelta
) -> None:
    user = make_user()
    session = await stack.start(user)
    agent = Agent(stack, user, session.id, offset, sends_clock=True)
    sent: dict[str, datetime] = {}  # agent's stamp of each event
    real: dict[str, datetime] = {}  # the real moment it stands for
    for n in range(3):
        at = agent.now()
        real[f"a{n}"], sent[f"a{n}"] = at - offset, at
        ack = await agent.send([event(10, at=at, client_id=f"a{n}")])
        assert (ack.accepted, ack.duplicate, ack.rejected) == (1, 0, 0), ack
        assert ack.session.total_active_seconds == 10 * (n + 1)
    await agent.close()
    stored = await _stored(owner_engine, session.id)
    assert set(stored) == set(sent)
    for cid, at in stored.items():
        assert at - sent[cid] == -offset  # corrected by whole seconds: exactly the offset
        assert abs(at - real[cid]) < timedelta(seconds=1)
    assert await invariant_violations(owner_engine, [session.id]) == []


async def test_the_smallest_difference_seen_is_the_offset(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    """A batch that seems to have travelled 1.2 s first measures 601 s; an on-time batch
    then measures 600 s, which a later slow one does not undo."""
    user = make_user()
    session = await stack.start(user)
    agent = Agent(stack, user, session.id, -TEN_MINUTES, sends_clock=True)
    late = timedelta(seconds=1.2)
    sent: dict[str, datetime] = {}
    for cid, delay, back in (("slow", late, 1.5), ("on-time", timedelta(0), 0), ("slow-again", late, 0)):
        sent[cid] = agent.now() - timedelta(seconds=back)
        ack = await agent.send([event(10, at=sent[cid], client_id=cid)], late=delay)
        assert (ack.accepted, ack.rejected) == (1, 0), ack
    await agent.close()
    stored = await _stored(owner_engine, session.id)
    assert {cid: stored[cid] - at for cid, at in sent.items()} == {
        "slow": timedelta(seconds=601),
        "on-time": timedelta(seconds=600),
        "slow-again": timedelta(seconds=600),
    }
    assert await invariant_violations(owner_engine, [session.id]) == []


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(-TEN_MINUTES, pb.REJECT_REASON_BEFORE_SESSION_START), (TEN_MINUTES, pb.REJECT_REASON_TIMESTAMP_IN_FUTURE)],
    ids=["behind", "ahead"],
)
async def test_without_the_agent_clock_only_the_fixed_allowance_applies(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine, offset: timedelta, reason: int
) -> None:
    user = make_user()
    session = await stack.start(user)
    agent = Agent(stack, user, session.id, offset, sends_clock=False)
    ack = await agent.send([event(10, at=agent.now(), client_id="off"), event(5, at=datetime.now(UTC), client_id="ok")])
    await agent.close()
    assert (ack.accepted, ack.rejected) == (1, 1), ack
    assert _reasons(ack) == {0: reason}
    assert ack.session.total_active_seconds == 5
    assert set(await _stored(owner_engine, session.id)) == {"ok"}


@pytest.mark.parametrize(
    "offset",
    [timedelta(0), timedelta(seconds=1.5), timedelta(seconds=-1.5)],
    ids=["synchronised", "1.5s-ahead", "1.5s-behind"],
)
async def test_an_agent_within_two_seconds_keeps_its_stamps_exactly(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine, offset: timedelta
) -> None:
    user = make_user()
    session = await stack.start(user)
    agent = Agent(stack, user, session.id, offset, sends_clock=True)
    sent: dict[str, datetime] = {}
    for n in range(3):
        sent[f"s{n}"] = agent.now()
        ack = await agent.send([event(10, at=sent[f"s{n}"], client_id=f"s{n}")])
        assert (ack.accepted, ack.rejected) == (1, 0), ack
    await agent.close()
    assert await _stored(owner_engine, session.id) == sent
    assert await invariant_violations(owner_engine, [session.id]) == []


@pytest.mark.parametrize(
    "offset", [timedelta(0), TEN_MINUTES, -TEN_MINUTES], ids=["synchronised", "10min-ahead", "10min-behind"]
)
async def test_after_a_stop_later_stamps_are_after_the_end_even_within_a_second(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine, offset: timedelta
) -> None:
    user = make_user()
    session = await stack.start(user)
    agent = Agent(stack, user, session.id, offset, sends_clock=True)
    ack = await agent.send([event(10, at=agent.now(), client_id="before")])
    assert ack.accepted == 1, ack
    end = (await stack.stop(user, session.id)).end_time.ToDatetime(tzinfo=UTC)
    # The agent's stamps of moments around the stop (its clock is ``offset`` off).
    offline = end - timedelta(milliseconds=50) + offset
    just_after = end + timedelta(milliseconds=10) + offset
    now = agent.now()
    ack = await agent.send(
        [
            event(10, at=offline, client_id="offline"),
            event(10, at=just_after, client_id="just-after"),
            event(10, at=now, client_id="now"),
        ]
    )
    arrived = datetime.now(UTC)
    await agent.close()
    assert arrived - end < timedelta(seconds=1), "the batch came too late to test the moments after a stop"
    assert (ack.accepted, ack.rejected) == (1, 2), ack
    assert _reasons(ack) == {1: pb.REJECT_REASON_AFTER_SESSION_END, 2: pb.REJECT_REASON_AFTER_SESSION_END}
    assert all(r.message for r in ack.results)
    stored = await _stored(owner_engine, session.id)
    assert set(stored) == {"before", "offline"}
    assert stored["offline"] == end - timedelta(milliseconds=50)
    assert max(stored.values()) <= end
    assert ack.session.total_active_seconds == 20
    assert await invariant_violations(owner_engine, [session.id]) == []
