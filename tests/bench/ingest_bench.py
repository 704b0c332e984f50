"""Activity ingest benchmarks, each beside a baseline measured in the same run and database:

- gRPC stream ingest: 4 agents (one organization each), batches of 500, every batch durable
  and applied before its ack; baseline: a raw COPY of the same rows into a scratch table.
- The original's load test: 100 parallel single-event REST requests on one session.
- Sustained single-event REST: 10 and 50 clients on their own sessions (each in its own
  organization), and 50 in one organization, for 20 s each; baseline: raw single-row
  transactions (update the totals, insert the event) on one connection. CPU per request
  is printed per mesh process and for PostgreSQL's backends (every ``postgres`` process
  on the machine, so another database's work on a shared machine counts too).
- Peak resident memory of each process.

``BENCH_INGEST_ONLY=stream`` runs only the stream scenario and its COPY baseline (and the
memory rows). The stream scenario also prints how many events the acks counted as
accepted (all of them: a refused event is not durable work) and each process's CPU per
1,000 events while the agents streamed (PostgreSQL's as above; the agents' is this
process's). ``BENCH_INGEST_PROFILE=<file>`` samples
the ingest process with py-spy (``pip install py-spy``) for the stream scenario's whole
run and writes its collapsed stacks (``--format raw``) to that file.

The HTTP load comes from a minimal keep-alive HTTP/1.1 client (raw asyncio streams), so
the load generator takes as little of the machine's CPU from the mesh as possible.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import DEVNULL

import grpc
import psutil
import psycopg

from tests.bench.harness import BenchEnv, Row, peak_rss_mb
from tests.e2e.agent import Agent, make_batches
from tests.support import Mesh
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.sessions.v1 import sessions_pb2 as spb
from workpulse.sessions.v1 import sessions_pb2_grpc

AGENTS = 4
EVENTS_PER_AGENT = int(os.environ.get("BENCH_EVENTS_PER_AGENT", "50000"))
BATCH = 500
REST_CLIENTS = (10, 50)
REST_SECONDS = float(os.environ.get("BENCH_REST_SECONDS", "20"))
ONLY = os.environ.get("BENCH_INGEST_ONLY", "")
PROFILE = os.environ.get("BENCH_INGEST_PROFILE", "")


class HttpConnection:
    """One keep-alive HTTP/1.1 connection: send a request, read status and body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, host: str, path: str, body: bytes, token: str) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _rows(events: int) -> list[tuple[object, ...]]:
    org, session, user = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    return [
        (
            org,
            uuid.uuid4(),
            session,
            user,
            now + timedelta(milliseconds=n),
            "active",
            5,
            "editor",
            None,
            None,
            f"ev-{n}",
        )
        for n in range(events)
    ]


async def copy_baseline(database_url: str, events: int) -> float:
    """Rows per second of one COPY of ``events`` activity rows into a scratch table."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    rows = _rows(events)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute(
            "create table public.bench_copy (organization_id uuid, id uuid, session_id uuid, user_id uuid, "
            '"timestamp" timestamptz, activity_type text, duration_seconds integer, app_name text, url text, '
            "screenshot_timestamp timestamptz, client_event_id text)"
        )
        await conn.commit()
        started = time.perf_counter()
        async with conn.cursor() as cur, cur.copy("copy public.bench_copy from stdin") as copy:
            for row in rows:
                await copy.write_row(row)
        await conn.commit()
        elapsed = time.perf_counter() - started
        await conn.execute("drop table public.bench_copy")
        await conn.commit()
    return events / elapsed


async def raw_transactions_baseline(database_url: str, seconds: float) -> float:
    """Transactions per second of update-totals-and-insert-event on one connection."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute(
            "create table public.bench_sessions (id uuid primary key, total_active_seconds bigint, version bigint)"
        )
        await conn.execute(
            "create table public.bench_events (id uuid primary key default gen_random_uuid(), session_id uuid, "
            '"timestamp" timestamptz, activity_type text, duration_seconds integer)'
        )
        sid = uuid.uuid4()
        await conn.execute("insert into public.bench_sessions values (%s, 0, 0)", (sid,))
        await conn.commit()
        done = 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            await conn.execute(
                "update public.bench_sessions set total_active_seconds = total_active_seconds + 60, "
                "version = version + 1 where id = %s",
                (sid,),
            )
            await conn.execute(
                'insert into public.bench_events (session_id, "timestamp", activity_type, duration_seconds) '
                "values (%s, now(), 'active', 60)",
                (sid,),
            )
            await conn.commit()
            done += 1
        rate = done / (time.perf_counter() - started)
        await conn.execute("drop table public.bench_sessions, public.bench_events")
        await conn.commit()
    return rate


async def _start_session(sessions_address: str, token: str) -> spb.Session:
    async with grpc.aio.insecure_channel(sessions_address) as channel:
        stub = sessions_pb2_grpc.SessionsServiceStub(channel)
        reply = await stub.StartSession(spb.StartSessionRequest(), metadata=(("authorization", f"Bearer {token}"),))
        return reply.session


def _restamp(batches: list[pb.StreamActivityRequest], start: datetime) -> None:
    """Spreads an agent's events over half a second from its session's start.

    make_batches stamps them a millisecond apart, so at bench speed (thousands a second
    per agent) most would be stamped seconds ahead of their arrival and refused as in the
    future: the scenario would time refusals, not durable events. Half a second stays
    inside the stream's clock allowance whatever the speed."""
    step = timedelta(microseconds=max(1, 500_000 // EVENTS_PER_AGENT))
    n = 0
    for batch in batches:
        for event in batch.events:
            event.timestamp.FromDatetime(start + n * step)
            n += 1


async def stream_scenario(env: BenchEnv, mesh: Mesh) -> tuple[float, int, dict[str, float]]:
    """(events/s acknowledged, events the acks counted as accepted, CPU seconds each
    process spent while the agents streamed: see _cpu_seconds)."""
    sessions_address, ingest_address = mesh.address("sessions"), mesh.address("ingest")
    agents = []
    for _ in range(AGENTS):
        token = env.tokens.user(role="employee", ttl=3600)
        session = await _start_session(sessions_address, token)
        start = session.start_time.ToDatetime(tzinfo=UTC) + timedelta(milliseconds=1)
        batches = make_batches(session.id, events=EVENTS_PER_AGENT, per_batch=BATCH, start=start)
        _restamp(batches, start)
        agents.append(Agent(ingest_address, token, batches, window=4))
    before = _cpu_seconds(mesh)
    started = time.perf_counter()
    await asyncio.gather(*(a.run(deadline_seconds=600) for a in agents))
    elapsed = time.perf_counter() - started
    spent = {k: v - before[k] for k, v in _cpu_seconds(mesh).items()}
    accepted = sum(ack.accepted for a in agents for ack in a.acked.values())
    return AGENTS * EVENTS_PER_AGENT / elapsed, accepted, spent


async def _py_spy(pid: int, output: str) -> asyncio.subprocess.Process:
    """py-spy sampling ``pid`` until stopped (SIGINT writes the file)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--output", output]
    process = await asyncio.create_subprocess_exec(*command, "--nonblocking", stdout=DEVNULL, stderr=DEVNULL)
    await asyncio.sleep(1.0)  # py-spy attaches before the load starts
    return process


async def original_scenario(host: str, port: int, token: str, session_id: str) -> tuple[float, int]:
    body = json.dumps({"activityType": "active", "durationSeconds": 60, "appName": "VS Code"}).encode()
    connections = await asyncio.gather(*(HttpConnection.open(host, port) for _ in range(100)))
    started = time.perf_counter()
    replies = await asyncio.gather(
        *(c.post(host, f"/sessions/{session_id}/activity", body, token) for c in connections)
    )
    elapsed = time.perf_counter() - started
    for c in connections:
        c.close()
    return elapsed * 1000, sum(1 for status, _ in replies if status == 201)


async def sustained_scenario(
    host: str, port: int, clients: list[tuple[str, str]], seconds: float
) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, failures) of closed-loop clients for ``seconds``."""
    latencies: list[float] = []
    failures = 0
    body = json.dumps({"activityType": "active", "durationSeconds": 60}).encode()
    deadline = time.perf_counter() + seconds

    async def client(token: str, session_id: str) -> None:
        nonlocal failures
        conn = await HttpConnection.open(host, port)
        try:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                status, _ = await conn.post(host, f"/sessions/{session_id}/activity", body, token)
                latencies.append(time.perf_counter() - sent)
                failures += status != 201
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(t, s) for t, s in clients))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000, failures


def _cpu_seconds(mesh: Mesh) -> dict[str, float]:
    """User plus system CPU seconds each process of ``mesh`` (and, as ``postgres``, every
    PostgreSQL process of the machine; as ``agents (this process)``, the benchmark's own,
    the load generator) has used so far."""
    found = {}
    for name, p in mesh.processes.items():
        assert p.proc is not None
        times = psutil.Process(p.proc.pid).cpu_times()
        found[name] = times.user + times.system
    found["postgres"] = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            try:
                times = proc.cpu_times()
            except psutil.Error:  # gone between listing and reading: its CPU is not counted
                continue
            found["postgres"] += times.user + times.system
    times = psutil.Process().cpu_times()
    found["agents (this process)"] = times.user + times.system
    return found


async def run(env: BenchEnv) -> list[Row]:
    # Realtime reads every committed event off the stream, so its cost is the request's too.
    mesh = env.start_mesh(only=("auth", "sessions", "ingest", "realtime", "gateway"))
    sessions_address = mesh.address("sessions")
    host, port = mesh.processes["gateway"].address.split(":")
    rows: list[Row] = []

    ingest_proc = mesh.processes["ingest"].proc
    assert ingest_proc is not None
    spy = await _py_spy(ingest_proc.pid, PROFILE) if PROFILE else None
    stream_rate, accepted, spent = await stream_scenario(env, mesh)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await spy.wait()
    copy_rate = await copy_baseline(env.database_url, AGENTS * EVENTS_PER_AGENT)
    rows.append(
        Row(
            "gRPC stream ingest, 4 agents x 500/batch",
            "events/s (acked)",
            stream_rate,
            copy_rate,
            "raw COPY",
            ">= 100,000/s, >= 0.35x",
        )
    )
    name = "gRPC stream ingest, 4 agents x 500/batch"
    rows.append(Row(name, "events accepted", accepted, AGENTS * EVENTS_PER_AGENT, "events sent", "= 1x"))
    thousands = AGENTS * EVENTS_PER_AGENT / 1000
    for process in ("ingest", "sessions", "realtime", "postgres", "agents (this process)"):
        rows.append(Row(name, f"CPU ms/1,000 events: {process}", 1000 * spent[process] / thousands))
    if ONLY == "stream":
        for process, mib in sorted(peak_rss_mb(mesh).items()):
            rows.append(Row(f"peak RSS: {process}", "MiB", mib))
        return rows

    token = env.tokens.user(role="admin", ttl=3600)
    session = await _start_session(sessions_address, token)
    wall_ms, ok = await original_scenario(host, int(port), token, session.id)
    rows.append(Row("original: 100 parallel POST activity", "wall ms", wall_ms))
    rows.append(Row("original: 100 parallel POST activity", "201 responses", ok, 100, "requests sent", "= 1x"))

    raw_rate = await raw_transactions_baseline(env.database_url, min(REST_SECONDS, 10.0))
    shared_org = str(uuid.uuid4())
    for clients_count, org in [(n, None) for n in REST_CLIENTS] + [(max(REST_CLIENTS), shared_org)]:
        clients = []
        for _ in range(clients_count):
            user_token = env.tokens.user(org=org, role="employee", ttl=3600)
            clients.append((user_token, (await _start_session(sessions_address, user_token)).id))
        before = _cpu_seconds(mesh)
        rate, p50, p99, failures = await sustained_scenario(host, int(port), clients, REST_SECONDS)
        spent = {k: v - before[k] for k, v in _cpu_seconds(mesh).items()}
        label = "1 org" if org else f"{clients_count} orgs"
        name = f"sustained REST, {clients_count} clients on their own sessions, {label}"
        rows.append(Row(name, "requests/s", rate, raw_rate, "raw 1-row tx, 1 conn", ">= 450/s, >= 0.28x"))
        rows.append(Row(name, "p50 ms", p50))
        rows.append(Row(name, "p99 ms", p99, goal="< 250" if clients_count == 50 else ""))
        rows.append(Row(name, "non-201 responses", failures))
        requests = rate * REST_SECONDS
        mesh_ms = sum(1000 * spent[p] / requests for p in mesh.processes)
        rows.append(Row(name, "CPU ms/request: mesh (all processes)", mesh_ms, goal="<= 3"))
        for process in ("gateway", "ingest", "sessions", "realtime"):
            rows.append(Row(name, f"CPU ms/request: {process}", 1000 * spent[process] / requests))
        rows.append(Row(name, "CPU ms/request: PostgreSQL", 1000 * spent["postgres"] / requests, goal="<= 1.5"))

    for process, mib in sorted(peak_rss_mb(mesh).items()):
        rows.append(Row(f"peak RSS: {process}", "MiB", mib))
    return rows
