"""Totals hand-off recovery, each path alone, with kills that land where it matters.

Sessions and ingest run as processes armed with a fault point (``workpulse.faults``): the
victim SIGKILLs itself at an exact place, on every run.

- ingest dies after a batch's events and hand-off commit, before the hand-off is applied:
  the redelivery loop alone must apply it when nobody resends the batch, and a resent
  batch alone (redelivery too slow to help) must settle it before its acknowledgement;
- sessions dies after applying a hand-off, before replying: ingest applies the same
  idempotency key again, and sessions must count it once.

Each test first checks that the kill landed where intended (exit status -9, the fault's
line in the process log, the stored state just after the kill), and in the end that the
stored events are exactly the distinct events sent, the totals are the independently
computed ones, the totals invariant holds and no hand-off is left unconfirmed.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.agent import Agent, expected_totals, make_batches
from tests.e2e.test_time_tracking import invariant_violations
from tests.support import Mesh, ServiceProcess, TokenFactory, eventually, start_mesh
from workpulse import faults
from workpulse.ingest.v1 import ingest_pb2 as ipb
from workpulse.sessions.v1 import sessions_pb2 as spb
from workpulse.sessions.v1 import sessions_pb2_grpc

pytestmark = pytest.mark.e2e

BATCHES = 6
PER_BATCH = 100
KILLED_AT = 3  # the batch whose commit (or apply) the victim does not survive


@dataclass(frozen=True)
class Stored:
    """What the databases hold for one session."""

    events: int
    distinct_events: int
    unapplied: int  # hand-offs whose idempotency key sessions has never claimed
    unconfirmed: int  # hand-offs ingest has not marked applied
    totals: tuple[int, int]


async def stored(engine: AsyncEngine, session_id: str) -> Stored:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    """
                    with handoffs as (
                        select o.id, o.organization_id, o.published_at from ingest.outbox o
                        where o.topic = 'session_totals' and o.payload ->> 'session_id' = :sid
                    )
                    select
                        (select count(*) from ingest.activity_logs where session_id = cast(:sid as uuid)),
                        (select count(distinct client_event_id) from ingest.activity_logs
                            where session_id = cast(:sid as uuid)),
                        (select count(*) from handoffs h where not exists (
                            select 1 from sessions.applied_batches b
                            where b.organization_id = h.organization_id and b.idempotency_key = 'ingest:' || h.id)),
                        (select count(*) from handoffs where published_at is null),
                        s.total_active_seconds, s.total_idle_seconds
                    from sessions.work_sessions s where s.id = cast(:sid as uuid)
                    """
                ),
                {"sid": session_id},
            )
        ).one()
    return Stored(int(row[0]), int(row[1]), int(row[2]), int(row[3]), (int(row[4]), int(row[5])))


@asynccontextmanager
async def armed_mesh(
    mesh_env: dict[str, str], log_dir: Path, fault: str, *, redeliver_after: float
) -> AsyncIterator[Mesh]:
    """Sessions and ingest, both started with ``fault`` (only the process owning the point
    reaches it), hand-offs redelivered once ``redeliver_after`` seconds old."""
    env = {**mesh_env, faults.VARIABLE: fault, "INGEST_REDELIVER_AFTER_SECONDS": str(redeliver_after)}
    mesh = await asyncio.to_thread(start_mesh, env, log_dir, ("sessions", "ingest"))
    try:
        yield mesh
    finally:
        await asyncio.to_thread(mesh.stop)


async def killed_by_its_fault(process: ServiceProcess, point: str) -> None:
    """The process died of its own SIGKILL at ``point``; it restarts disarmed."""
    assert await process.exited(timeout=30) == -signal.SIGKILL
    assert f"fault point {point} reached {KILLED_AT} time(s): SIGKILL" in process.log_path.read_text()
    process.env = {k: v for k, v in process.env.items() if k != faults.VARIABLE}


async def start_session(mesh: Mesh, tokens: TokenFactory) -> tuple[str, spb.Session]:
    token = tokens.user()
    async with grpc.aio.insecure_channel(mesh.address("sessions")) as channel:
        stub = sessions_pb2_grpc.SessionsServiceStub(channel)
        reply = await stub.StartSession(spb.StartSessionRequest(), metadata=(("authorization", f"Bearer {token}"),))
    return token, reply.session


def batches_for(session: spb.Session) -> list[ipb.StreamActivityRequest]:
    start = session.start_time.ToDatetime(tzinfo=UTC) + timedelta(milliseconds=1)
    return make_batches(session.id, events=BATCHES * PER_BATCH, per_batch=PER_BATCH, start=start)


def ack_totals(ack: ipb.StreamActivityResponse) -> tuple[int, int]:
    return ack.session.total_active_seconds, ack.session.total_idle_seconds


async def assert_settled(engine: AsyncEngine, session_id: str, batches: list[ipb.StreamActivityRequest]) -> None:
    sent = {e.client_event_id for b in batches for e in b.events}
    settled = Stored(len(sent), len(sent), 0, 0, expected_totals(batches))

    async def confirmed() -> Stored | None:
        # In-line applies are confirmed lazily (a moment after their ack), so wait for it.
        now = await stored(engine, session_id)
        return None if now.unconfirmed else now

    assert await eventually(confirmed, timeout=10, interval=0.1, what="confirmed hand-offs") == settled
    assert await invariant_violations(engine, [session_id]) == []


async def ingest_killed_after_commit(mesh: Mesh, agent: Agent, engine: AsyncEngine, session_id: str) -> None:
    """Streams in lock-step until ingest dies right after committing batch KILLED_AT."""
    with pytest.raises(grpc.aio.AioRpcError):
        await agent.stream_once()
    await killed_by_its_fault(mesh.processes["ingest"], "ingest.after_commit")
    batches = agent.batches
    assert list(agent.acked) == [b.batch_id for b in batches[: KILLED_AT - 1]]
    # Its events are stored, its hand-off is not applied: sessions lacks exactly that batch.
    just_after = await stored(engine, session_id)
    assert (just_after.events, just_after.unapplied) == (KILLED_AT * PER_BATCH, 1)
    assert just_after.totals == expected_totals(batches[: KILLED_AT - 1])


async def test_ingest_killed_between_commit_and_apply_redelivery_alone_applies_the_abandoned_batch(
    mesh_env: dict[str, str], tmp_path: Path, tokens: TokenFactory, owner_engine: AsyncEngine
) -> None:
    async with armed_mesh(mesh_env, tmp_path, f"ingest.after_commit=kill:{KILLED_AT}", redeliver_after=1) as mesh:
        token, session = await start_session(mesh, tokens)
        batches = batches_for(session)
        first = Agent(mesh.address("ingest"), token, batches[:KILLED_AT], window=1)
        await ingest_killed_after_commit(mesh, first, owner_engine, session.id)

        # The agent gives the unacknowledged batch up: nobody resends it, so only the
        # restarted ingest's redelivery loop can apply its committed hand-off.
        await mesh.processes["ingest"].restart_async()

        async def redelivered() -> Stored | None:
            now = await stored(owner_engine, session.id)
            return now if now.unapplied == 0 and now.unconfirmed == 0 else None

        recovered = await eventually(redelivered, timeout=30, interval=0.2, what="redelivery of the hand-off")
        assert recovered.totals == expected_totals(batches[:KILLED_AT])

        rest = Agent(mesh.address("ingest"), token, batches[KILLED_AT:], window=1)
        await rest.run(deadline_seconds=60)
        assert ack_totals(rest.acked[batches[-1].batch_id]) == expected_totals(batches)
        await assert_settled(owner_engine, session.id, batches)


async def test_ingest_killed_between_commit_and_apply_a_resent_batch_is_settled_before_its_ack(
    mesh_env: dict[str, str], tmp_path: Path, tokens: TokenFactory, owner_engine: AsyncEngine
) -> None:
    # Redelivery only takes hand-offs an hour old: it cannot help within this test.
    fault = f"ingest.after_commit=kill:{KILLED_AT}"
    async with armed_mesh(mesh_env, tmp_path, fault, redeliver_after=3600) as mesh:
        token, session = await start_session(mesh, tokens)
        batches = batches_for(session)
        agent = Agent(mesh.address("ingest"), token, batches, window=1)
        await ingest_killed_after_commit(mesh, agent, owner_engine, session.id)

        # The agent keeps reconnecting while ingest restarts, then resends the lost batch
        # first: all duplicates, so only settling the session's pending hand-offs can
        # make its acknowledgement include it.
        resending = asyncio.create_task(agent.run(deadline_seconds=90))
        await mesh.processes["ingest"].restart_async()
        await resending
        assert agent.reconnects >= 1
        resent = agent.acked[batches[KILLED_AT - 1].batch_id]
        assert (resent.accepted, resent.duplicate) == (0, PER_BATCH)
        assert ack_totals(resent) == expected_totals(batches[:KILLED_AT])
        assert ack_totals(agent.acked[batches[-1].batch_id]) == expected_totals(batches)
        await assert_settled(owner_engine, session.id, batches)


async def test_sessions_killed_between_apply_and_reply_the_reapplied_hand_off_counts_once(
    mesh_env: dict[str, str], tmp_path: Path, tokens: TokenFactory, owner_engine: AsyncEngine
) -> None:
    # Redelivery waits 30 s, so every ApplyActivity before the kill is an in-line one and
    # the KILLED_AT-th is batch KILLED_AT's; the agent's resend re-applies its key.
    fault = f"sessions.after_apply=kill:{KILLED_AT}"
    async with armed_mesh(mesh_env, tmp_path, fault, redeliver_after=30) as mesh:
        token, session = await start_session(mesh, tokens)
        batches = batches_for(session)
        agent = Agent(mesh.address("ingest"), token, batches, window=1)
        streaming = asyncio.create_task(agent.run(deadline_seconds=90))
        sessions = mesh.processes["sessions"]
        await killed_by_its_fault(sessions, "sessions.after_apply")

        # Sessions counted batch KILLED_AT; ingest never heard so, and its hand-off is unconfirmed.
        just_after = await stored(owner_engine, session.id)
        assert just_after.totals == expected_totals(batches[:KILLED_AT])
        assert just_after.unconfirmed >= 1
        assert batches[KILLED_AT - 1].batch_id not in agent.acked
        assert len(agent.acked) == KILLED_AT - 1

        await sessions.restart_async()
        await streaming
        # Issue 11: the killed batch's events were durable, so its ack is a success with
        # the totals pending (no resend invited); its hand-off is applied again later and
        # still counts once.
        assert agent.acked[batches[KILLED_AT - 1].batch_id].totals_pending
        # A resend of that batch (all duplicates) settles every pending hand-off of the
        # session first: the re-applied one, applied before the kill, still counts once.
        # (Until ingest's channel to the restarted sessions reconnects, the resend's ack
        # says pending too; each such resend is counted once as well.)
        deadline = time.monotonic() + 30
        while True:
            resend = Agent(mesh.address("ingest"), token, [batches[KILLED_AT - 1]], window=1)
            await resend.run(deadline_seconds=30)
            ack = resend.acked[batches[KILLED_AT - 1].batch_id]
            assert ack.duplicate == PER_BATCH
            if not ack.totals_pending:
                break
            assert time.monotonic() < deadline, "sessions never applied the pending hand-offs"
            await asyncio.sleep(0.5)
        assert ack_totals(ack) == expected_totals(batches)
        await assert_settled(owner_engine, session.id, batches)
