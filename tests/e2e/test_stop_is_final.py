"""A stop is final: stopping a session while its agents stream at full speed, on one
ingest replica and on two, stores no event stamped after the session's end.

Sessions and ingest run as real processes; with two replicas both ingest processes share
the database and sessions reaches them through one round-robin target (its CloseSession
lands on either). One user's session has agents on every replica at once; each agent
streams batches as fast as the stream takes them, every event stamped by the agent's
clock (real time, the same clock as the database's) over the last few milliseconds, with
a unique client_event_id and the batch's agent_time. Mid-stream the session is stopped
over gRPC while the agents keep sending; then:

- every event stamped after the stop's end_time was refused (REJECTED,
  REJECT_REASON_AFTER_SESSION_END), some of them on every replica, and every event
  stamped at or before it was accepted, even when it arrived after the stop;
- the store holds exactly the accepted events, none stamped after end_time, which is
  also ingest's bounds row's and the session row's end;
- last_activity_at <= end_time (it is the latest stored stamp);
- once the hand-offs settle, the session totals equal the sums of the stored events.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Mesh, ServiceProcess, TokenFactory, free_port
from workpulse.ingest.v1 import ingest_pb2 as ipb
from workpulse.ingest.v1 import ingest_pb2_grpc
from workpulse.sessions.v1 import sessions_pb2 as spb
from workpulse.sessions.v1 import sessions_pb2_grpc
from workpulse.supervisor import PROCESSES

pytestmark = pytest.mark.e2e

AGENTS_PER_REPLICA = 2
PER_BATCH = 50
# An agent's batch holds what it observed over the last PER_BATCH milliseconds, so a
# batch sent just after the stop still carries events stamped before the end.
EVENT_SPACING = timedelta(milliseconds=1)
WINDOW = 8  # unacknowledged batches per agent
BEFORE_STOP = 1.5  # seconds of streaming before the stop
AFTER_STOP = 1.5  # and after it
SETTLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class SentEvent:
    client_event_id: str
    timestamp: datetime
    idle: bool
    duration: int
    batch_sent_at: datetime  # the batch's agent_time


@dataclass
class StreamingAgent:
    """One desktop agent streaming fresh batches until told to stop; it keeps every event
    it sent and every acknowledgement (no resends: each event is sent once)."""

    name: str
    replica: int
    address: str
    token: str
    session_id: str
    sent: dict[str, list[SentEvent]] = field(default_factory=dict)  # batch id -> its events
    acks: dict[str, ipb.StreamActivityResponse] = field(default_factory=dict)
    count: int = 0

    def next_batch(self) -> ipb.StreamActivityRequest:
        now = datetime.now(UTC)
        batch = ipb.StreamActivityRequest(batch_id=uuid.uuid4().hex, session_id=self.session_id)
        batch.agent_time.FromDatetime(now)
        events: list[SentEvent] = []
        for i in range(PER_BATCH):
            n = self.count
            self.count += 1
            sent = SentEvent(
                client_event_id=f"{self.name}-{n}",
                timestamp=now - (PER_BATCH - 1 - i) * EVENT_SPACING,
                idle=n % 5 == 0,
                duration=1 + n % 7,
                batch_sent_at=now,
            )
            e = batch.events.add(
                activity_type=ipb.ACTIVITY_TYPE_IDLE if sent.idle else ipb.ACTIVITY_TYPE_ACTIVE,
                duration_seconds=sent.duration,
                app_name="editor",
                client_event_id=sent.client_event_id,
            )
            e.timestamp.FromDatetime(sent.timestamp)
            events.append(sent)
        self.sent[batch.batch_id] = events
        return batch

    async def run(self, stop: asyncio.Event) -> None:
        """Streams until ``stop`` is set, then ends its side and reads the last acks."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            credit = asyncio.Semaphore(WINDOW)

            async def requests() -> AsyncIterator[ipb.StreamActivityRequest]:
                while True:
                    await credit.acquire()
                    if stop.is_set():
                        return
                    yield self.next_batch()

            call = stub.StreamActivity(requests(), metadata=(("authorization", f"Bearer {self.token}"),))
            async for ack in call:
                credit.release()
                self.acks[ack.batch_id] = ack


@asynccontextmanager
async def replica_mesh(mesh_env: dict[str, str], log_dir: Path, replicas: int) -> AsyncIterator[Mesh]:
    """Sessions and ``replicas`` ingest processes (one spec, one environment, own ports) logging
    into ``log_dir`` (which exists); sessions' INGEST_ADDR lists every replica (round robin)."""
    specs = {s.name: s for s in PROCESSES}
    sessions_port = free_port()
    ingest_ports = [free_port() for _ in range(replicas)]
    env = {
        **mesh_env,
        "SESSIONS_ADDR": f"127.0.0.1:{sessions_port}",
        "INGEST_ADDR": "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ingest_ports),
        # Many agents of one user at full speed: the per-user budget is not under test.
        "INGEST_REQUESTS_PER_MINUTE": "10000000",
    }
    mesh = Mesh()
    mesh.processes["sessions"] = ServiceProcess(specs["sessions"], sessions_port, dict(env), log_dir / "sessions.log")
    for n, port in enumerate(ingest_ports):
        mesh.processes[f"ingest-{n}"] = ServiceProcess(specs["ingest"], port, dict(env), log_dir / f"ingest-{n}.log")
    try:
        for p in mesh.processes.values():
            await asyncio.to_thread(p.start)
        for p in mesh.processes.values():
            await asyncio.to_thread(p.wait_healthy)
        yield mesh
    finally:
        await asyncio.to_thread(mesh.stop)


@dataclass(frozen=True)
class Stored:
    """What the databases hold for the session."""

    events: int
    after_end: int  # stored events stamped after the session row's end_time
    active: int  # sum of stored active durations
    idle: int
    latest: datetime | None  # latest stored stamp
    unconfirmed: int  # session_totals hand-offs not marked applied
    totals: tuple[int, int]  # the session row's total_active_seconds, total_idle_seconds
    last_activity_at: datetime | None
    end_time: datetime | None  # the session row's
    bounds_end: datetime | None  # ingest.session_bounds'
    status: str

    @property
    def settled(self) -> bool:
        return self.unconfirmed == 0 and self.totals == (self.active, self.idle)


async def stored(engine: AsyncEngine, session_id: str) -> Stored:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    """
                    select
                        (select count(*) from ingest.activity_logs a where a.session_id = s.id),
                        (select count(*) from ingest.activity_logs a
                            where a.session_id = s.id and a."timestamp" > s.end_time),
                        (select coalesce(sum(duration_seconds), 0) from ingest.activity_logs a
                            where a.session_id = s.id and a.activity_type = 'active'),
                        (select coalesce(sum(duration_seconds), 0) from ingest.activity_logs a
                            where a.session_id = s.id and a.activity_type = 'idle'),
                        (select max(a."timestamp") from ingest.activity_logs a where a.session_id = s.id),
                        (select count(*) from ingest.outbox o
                            where o.topic = 'session_totals' and o.published_at is null
                              and o.payload ->> 'session_id' = :sid),
                        s.total_active_seconds, s.total_idle_seconds, s.last_activity_at, s.end_time,
                        (select b.end_time from ingest.session_bounds b where b.session_id = s.id),
                        s.status
                    from sessions.work_sessions s where s.id = cast(:sid as uuid)
                    """
                ),
                {"sid": session_id},
            )
        ).one()
    return Stored(
        int(row[0]),
        int(row[1]),
        int(row[2]),
        int(row[3]),
        row[4],
        int(row[5]),
        (int(row[6]), int(row[7])),
        row[8],
        row[9],
        row[10],
        str(row[11]),
    )


async def stored_ids(engine: AsyncEngine, session_id: str) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("select client_event_id from ingest.activity_logs where session_id = cast(:sid as uuid)"),
            {"sid": session_id},
        )
        return {str(r[0]) for r in rows}


async def settled(engine: AsyncEngine, session_id: str) -> Stored:
    """The stored state once the hand-offs settle (or the last one seen at the deadline)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        now = await stored(engine, session_id)
        if now.settled or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.2)


@dataclass
class Outcomes:
    """Every sent event by what its acknowledgement said, against the stop's end."""

    batches: int = 0
    events: int = 0
    accepted: list[SentEvent] = field(default_factory=list)
    refused_after_end: int = 0
    late_before_end: int = 0  # stamped at or before the end, in a batch sent after it
    failed_batches: list[str] = field(default_factory=list)
    unacked_batches: int = 0
    wrong: list[str] = field(default_factory=list)  # outcomes that break the guarantee
    refused_by_replica: dict[int, int] = field(default_factory=dict)
    accepted_by_replica: dict[int, int] = field(default_factory=dict)


def classify(agents: list[StreamingAgent], end: datetime) -> Outcomes:
    out = Outcomes()
    for agent in agents:
        out.refused_by_replica.setdefault(agent.replica, 0)
        out.accepted_by_replica.setdefault(agent.replica, 0)
        for batch_id, events in agent.sent.items():
            out.batches += 1
            out.events += len(events)
            ack = agent.acks.get(batch_id)
            if ack is None:
                out.unacked_batches += 1
                continue
            if ack.status_code != 0:
                out.failed_batches.append(f"{agent.name}: {ack.status_code} {ack.status_message}")
                continue
            results = {r.index: r for r in ack.results}
            for index, event in enumerate(events):
                result = results.get(index)
                if event.timestamp > end:
                    if (
                        result is not None
                        and result.status == ipb.EVENT_STATUS_REJECTED
                        and result.reason == ipb.REJECT_REASON_AFTER_SESSION_END
                    ):
                        out.refused_after_end += 1
                        out.refused_by_replica[agent.replica] += 1
                    else:
                        out.wrong.append(
                            f"{event.client_event_id} stamped {event.timestamp.isoformat()} after the end "
                            f"{end.isoformat()} not refused: {result or 'accepted'}"
                        )
                elif result is None:
                    out.accepted.append(event)
                    out.accepted_by_replica[agent.replica] += 1
                    if event.batch_sent_at > end:
                        out.late_before_end += 1
                else:
                    out.wrong.append(
                        f"{event.client_event_id} stamped {event.timestamp.isoformat()} at or before the end "
                        f"{end.isoformat()} not accepted: {result}"
                    )
            if ack.accepted != sum(1 for i in range(len(events)) if i not in results):
                out.wrong.append(f"batch {batch_id}: accepted={ack.accepted} disagrees with its results")
    return out


@pytest.mark.parametrize("replicas", [1, 2])
async def test_stop_during_full_speed_streams_is_final_on_every_replica(
    replicas: int,
    mesh_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    tokens: TokenFactory,
    owner_engine: AsyncEngine,
) -> None:
    log_dir = tmp_path_factory.mktemp(f"stop-final-{replicas}")
    async with replica_mesh(mesh_env, log_dir, replicas) as mesh:
        org, user = str(uuid.uuid4()), str(uuid.uuid4())
        token = tokens.user(org, sub=user, role="employee")
        md = (("authorization", f"Bearer {token}"),)
        async with grpc.aio.insecure_channel(mesh.address("sessions")) as channel:
            sessions = sessions_pb2_grpc.SessionsServiceStub(channel)
            session = (await sessions.StartSession(spb.StartSessionRequest(), metadata=md)).session
            agents = [
                StreamingAgent(f"r{r}a{a}", r, mesh.address(f"ingest-{r}"), token, session.id)
                for r in range(replicas)
                for a in range(AGENTS_PER_REPLICA)
            ]
            done = asyncio.Event()
            streams = [asyncio.create_task(a.run(done)) for a in agents]
            try:
                await asyncio.sleep(BEFORE_STOP)
                stop_called = time.monotonic()
                stopped = await sessions.StopSession(spb.StopSessionRequest(session_id=session.id), metadata=md)
                stop_seconds = time.monotonic() - stop_called
                await asyncio.sleep(AFTER_STOP)
            finally:
                done.set()
                results = await asyncio.wait_for(asyncio.gather(*streams, return_exceptions=True), 30)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == [], f"agent streams failed: {errors!r}; logs in {log_dir}"

        end = stopped.session.end_time.ToDatetime(tzinfo=UTC)
        out = classify(agents, end)
        final = await settled(owner_engine, session.id)
        ids = await stored_ids(owner_engine, session.id)
        expected_active = sum(e.duration for e in out.accepted if not e.idle)
        expected_idle = sum(e.duration for e in out.accepted if e.idle)
        gap = (end - final.latest).total_seconds() * 1000 if final.latest else float("nan")
        figures = (
            f"replicas={replicas} agents={len(agents)} batches={out.batches} events={out.events} "
            f"accepted={len(out.accepted)} (by replica {out.accepted_by_replica}) "
            f"refused_after_end={out.refused_after_end} (by replica {out.refused_by_replica}) "
            f"late_before_end_accepted={out.late_before_end} failed_batches={len(out.failed_batches)} "
            f"unacked={out.unacked_batches} stored={final.events} stored_after_end={final.after_end} "
            f"end_time={end.isoformat()} latest_stored={final.latest.isoformat() if final.latest else None} "
            f"(end - latest = {gap:.3f} ms) last_activity_at="
            f"{final.last_activity_at.isoformat() if final.last_activity_at else None} "
            f"totals={final.totals} stored_sums={(final.active, final.idle)} "
            f"expected={(expected_active, expected_idle)} unconfirmed={final.unconfirmed} "
            f"stop_rpc={stop_seconds * 1000:.0f} ms"
        )
        print(f"\nstop is final: {figures}")

        assert stopped.session.status == "stopped", figures
        assert out.failed_batches == [] and out.unacked_batches == 0, f"{out.failed_batches[:5]}; {figures}"
        assert out.wrong == [], f"{len(out.wrong)} wrong outcomes, first: {out.wrong[:5]}; {figures}"
        # The stop landed mid-stream, on every replica: each accepted events before it and
        # refused some after it, or this proves nothing.
        assert all(n > 0 for n in out.accepted_by_replica.values()), figures
        assert all(n > 0 for n in out.refused_by_replica.values()), figures

        assert final.status == "stopped", figures
        assert final.end_time == end and final.bounds_end == end, (
            f"session row end {final.end_time}, bounds end {final.bounds_end}, stop reply {end}; {figures}"
        )
        assert final.after_end == 0, figures
        assert final.latest is not None and final.latest <= end, figures
        assert ids == {e.client_event_id for e in out.accepted}, (
            f"{len(ids - {e.client_event_id for e in out.accepted})} stored but not accepted, "
            f"{len({e.client_event_id for e in out.accepted} - ids)} accepted but not stored; {figures}"
        )
        assert final.last_activity_at is not None and final.last_activity_at <= end, figures
        assert final.last_activity_at == final.latest, figures
        assert final.unconfirmed == 0, f"hand-offs not settled within {SETTLE_TIMEOUT}s; {figures}"
        assert (final.active, final.idle) == (expected_active, expected_idle), figures
        assert final.totals == (final.active, final.idle), figures
