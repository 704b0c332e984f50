"""Live events benchmark: 1,000 concurrent WebSocket clients over 10 organizations while
events are committed at 500/s.

- commit → receipt: a producer process commits one outbox row per event (SESSION_UPDATE of
  a random employee) and runs the outbox relay, as a service does; the event then goes
  Redis stream → realtime → gRPC → gateway → WebSocket. Latency is the receipt's wall clock
  minus the commit's (same machine). Each event reaches its organization's 2 managers and
  the employee, so 500 events/s are 1,500 frames/s.
- baseline, in the same run and process: raw Redis PUBLISH → SUBSCRIBE at the same rate.
- gateway (and realtime) memory per idle connection: RSS growth over 1,000 connections.

``python -m tests.bench realtime`` runs it alone; BENCH_RT_CLIENTS, BENCH_RT_RATE and
BENCH_RT_SECONDS change the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aioredis
import websockets
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.bench.harness import BenchEnv, Row, percentiles
from workpulse.migrate import outbox_ddl

CLIENTS = int(os.environ.get("BENCH_RT_CLIENTS", "1000"))
ORGS = 10
MANAGERS_PER_ORG = 2
RATE = float(os.environ.get("BENCH_RT_RATE", "500"))
SECONDS = float(os.environ.get("BENCH_RT_SECONDS", "20"))
WARMUP_SECONDS = 2.0
SCHEMA = "rtbench"
SCENARIO = "realtime"


class Client:
    """One browser: a WebSocket to the gateway recording when each event arrived."""

    def __init__(self, url: str, user: str, manager: bool) -> None:
        self.url = url
        self.user = user
        self.manager = manager
        self.received: list[tuple[int, float, float]] = []  # (seq, received at, appended to the stream at)
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.ws = await websockets.connect(self.url, compression=None, open_timeout=60, max_queue=None)
        ready = json.loads(await self.ws.recv())
        assert ready["event"] == "ready", ready
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.time()
                frame = json.loads(raw)
                if frame["event"] == "SESSION_UPDATE":
                    appended = int(frame["id"].partition("-")[0]) / 1000
                    self.received.append((frame["data"]["seq"], now, appended))
        except websockets.ConnectionClosed:
            pass

    async def close(self) -> None:
        await self.ws.close()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


def _print_timeline(clients: list[Client], committed: list[float | None]) -> None:
    """p50 / p99 / max of stream→receipt per 500 ms of the run, to see periodic stalls."""
    buckets: dict[int, list[float]] = {}
    for c in clients:
        for seq, at, appended in c.received:
            if committed[seq] is not None:
                buckets.setdefault(int(appended * 2), []).append((at - appended) * 1000)
    for key in sorted(buckets):
        p50, p99, top = percentiles(buckets[key])
        print(f"{key / 2:.1f} n={len(buckets[key])} p50={p50:.1f} p99={p99:.1f} max={top:.1f}", file=sys.stderr)


async def _all_received(clients: list[Client], total: int, timeout: float) -> None:
    """Waits (bounded) until the clients hold ``total`` events; the count tells if some never came."""
    deadline = time.monotonic() + timeout
    while sum(len(c.received) for c in clients) < total and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)


async def _redis_baseline(url: str, channel: str, rate: float, seconds: float) -> list[float]:
    """PUBLISH → SUBSCRIBE latency (ms) of messages carrying their send time."""
    pub, sub_client = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    pubsub = sub_client.pubsub()
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    latencies: list[float] = []
    count = int(rate * seconds)

    async def receive() -> None:
        while len(latencies) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            if message is None:
                return
            latencies.append((time.time() - float(message["data"])) * 1000)

    receiver = asyncio.create_task(receive())
    start = time.monotonic()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        await pub.publish(channel, repr(time.time()))
    await asyncio.wait_for(receiver, 30)
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await pub.aclose()
    await sub_client.aclose()
    return latencies


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _rss_kib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 1024


async def _settle_rss(pid: int) -> float:
    """RSS once it stops moving (allocator and buffers settle after connects)."""
    previous = _rss_kib(pid)
    for _ in range(20):
        await asyncio.sleep(0.5)
        now = _rss_kib(pid)
        if abs(now - previous) < 64:
            return now
        previous = now
    return previous


async def _create_outbox(database_url: str) -> None:
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text(f"create schema if not exists {SCHEMA}"))
        await conn.execute(text(f"grant usage on schema {SCHEMA} to workpulse_app, workpulse_maintenance"))
        for ddl in outbox_ddl(SCHEMA):
            await conn.execute(text(ddl))
    await engine.dispose()


async def run(env: BenchEnv) -> list[Row]:
    mesh = env.start_mesh(only=("realtime", "gateway"))
    gateway_pid = mesh.processes["gateway"].proc.pid  # type: ignore[union-attr]
    realtime_pid = mesh.processes["realtime"].proc.pid  # type: ignore[union-attr]
    await _create_outbox(env.database_url)
    ws_base = f"ws://{mesh.address('gateway')}/ws"

    orgs = [str(uuid.uuid4()) for _ in range(ORGS)]
    clients: list[Client] = []
    employees: dict[str, list[str]] = {org: [] for org in orgs}
    for n in range(CLIENTS):
        org, user = orgs[n % ORGS], str(uuid.uuid4())
        manager = n // ORGS < MANAGERS_PER_ORG
        token = env.tokens.user(org, user, "manager" if manager else "employee", ttl=3600)
        clients.append(Client(f"{ws_base}?token={token}", user, manager))
        if not manager:
            employees[org].append(user)

    idle_baseline = await _redis_baseline(env.redis_url, f"{env.env['REDIS_PREFIX']}:bench", RATE, 4)
    gateway_before, realtime_before = await _settle_rss(gateway_pid), await _settle_rss(realtime_pid)
    gate = asyncio.Semaphore(50)

    async def connect(c: Client) -> None:
        async with gate:
            await c.connect()

    started = time.monotonic()
    await asyncio.gather(*(connect(c) for c in clients))
    connect_seconds = time.monotonic() - started
    await asyncio.sleep(3)  # USER_ONLINE fan-out of 1,000 arrivals settles
    gateway_after, realtime_after = await _settle_rss(gateway_pid), await _settle_rss(realtime_pid)

    pids = {"gateway": gateway_pid, "realtime": realtime_pid, "clients": os.getpid()}
    # The load generator's own GC pauses would show as delivery latency: none while measuring.
    gc.freeze()
    gc.disable()
    plan = Path(env.work_dir) / "rt-plan.json"
    commits = Path(env.work_dir) / "rt-commits.json"
    rng = random.Random(7)
    events = [(org, rng.choice(employees[org])) for org in (rng.choice(orgs) for _ in range(int(RATE * SECONDS)))]
    plan.write_text(json.dumps({"events": events, "rate": RATE}))
    producer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench.realtime_bench",
        "produce",
        env.database_url,
        env.redis_url,
        env.env["REDIS_PREFIX"],
        str(plan),
        str(commits),
    )
    cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()} | {"producer": 0.0}
    producer_process = psutil.Process(producer.pid)
    load_started = time.monotonic()
    loaded_baseline = await _redis_baseline(env.redis_url, f"{env.env['REDIS_PREFIX']}:bench2", RATE, SECONDS / 2)
    producer_cpu = 0.0
    while producer.returncode is None:
        with contextlib.suppress(psutil.Error):
            producer_cpu = sum(producer_process.cpu_times()[:2])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(producer.wait(), 0.5)
    load_seconds = time.monotonic() - load_started
    cpu = {name: (_cpu_seconds(pid) - cpu_before[name]) / load_seconds * 100 for name, pid in pids.items()}
    cpu["producer"] = producer_cpu / load_seconds * 100
    committed: list[float | None] = json.loads(commits.read_text())
    gc.enable()
    gc.unfreeze()

    total_expected = len(events) * (MANAGERS_PER_ORG + 1)  # the organization's managers and the employee
    await _all_received(clients, total_expected, timeout=30)
    latencies: list[float] = []
    relayed: list[float] = []  # commit → appended to the stream (the outbox relay's part)
    fanned: list[float] = []  # appended → received (realtime, gateway, client)
    delivered = 0
    warm = int(RATE * WARMUP_SECONDS)
    for c in clients:
        for seq, at, appended in c.received:
            delivered += 1
            stamp = committed[seq]
            if seq >= warm and stamp is not None:
                latencies.append((at - stamp) * 1000)
                relayed.append((appended - stamp) * 1000)
                fanned.append((at - appended) * 1000)
    await asyncio.gather(*(c.close() for c in clients))
    if os.environ.get("BENCH_RT_TIMELINE"):
        _print_timeline(clients, committed)

    p50, p99, top = percentiles(latencies)
    r50, r99, rtop = percentiles(loaded_baseline)
    i50, i99, itop = percentiles(idle_baseline)
    commit_rate = sum(1 for c in committed if c is not None) / SECONDS
    base = "redis pub→sub, same load"
    return [
        Row(SCENARIO, f"{CLIENTS} ws clients connected (s)", connect_seconds),
        Row(SCENARIO, "events committed per s", commit_rate, goal=f"{RATE:.0f}"),
        Row(SCENARIO, "frames delivered / expected", delivered / total_expected if total_expected else 0, goal="1"),
        Row(SCENARIO, "commit→receipt p50 (ms)", p50, r50, base),
        Row(SCENARIO, "commit→receipt p99 (ms)", p99, r99, base, "≤ 30"),
        Row(SCENARIO, "commit→receipt max (ms)", top, rtop, base),
        Row(
            SCENARIO,
            "  of which commit→stream p50 / p99 (ms)",
            percentiles(relayed)[0],
            percentiles(relayed)[1],
            "p99",
        ),
        Row(
            SCENARIO,
            "  of which stream→receipt p50 / p99 (ms)",
            percentiles(fanned)[0],
            percentiles(fanned)[1],
            "p99",
        ),
        Row(SCENARIO, "redis pub→sub p50, no load (ms)", i50),
        Row(SCENARIO, "redis pub→sub p99, no load (ms)", i99),
        Row(SCENARIO, "redis pub→sub max, no load (ms)", itop),
        *(Row(SCENARIO, f"CPU % of one core under load: {name}", value) for name, value in cpu.items()),
        Row(SCENARIO, "gateway KiB per idle connection", (gateway_after - gateway_before) / CLIENTS),
        Row(SCENARIO, "realtime KiB per idle subscriber", (realtime_after - realtime_before) / CLIENTS),
    ]


async def _produce(database_url: str, redis_url: str, prefix: str, plan_path: str, out_path: str) -> None:
    """The producing service: commits the planned events at the planned rate, relays them."""
    from workpulse import outbox
    from workpulse.db import UnitOfWork, create_engine
    from workpulse.postgres import MAINTENANCE_ROLE
    from workpulse.redisconn import Keys, create_client

    plan = json.loads(await asyncio.to_thread(Path(plan_path).read_text))
    events: list[list[str]] = plan["events"]
    rate: float = plan["rate"]
    uow = UnitOfWork(create_engine(database_url, pool_size=20))
    client = create_client(redis_url)
    relay = outbox.OutboxRelay(
        create_engine(database_url, role=MAINTENANCE_ROLE, pool_size=2),
        SCHEMA,
        {outbox.EVENTS_TOPIC: outbox.StreamPublisher(client, Keys(prefix), SCHEMA)},
        listen_url=database_url,
        batch_size=200,
    )
    relaying = asyncio.create_task(relay.run())
    committed: list[float | None] = [None] * len(events)

    async def commit(seq: int, org: str, user: str) -> None:
        payload = {
            "sessionId": str(uuid.uuid4()),
            "userId": user,
            "organizationId": org,
            "total_active_seconds": seq,
            "total_idle_seconds": 0,
            "status": "active",
            "version": seq + 1,
            "seq": seq,
        }
        async with uow.tenant(org) as conn:
            await outbox.add(conn, SCHEMA, org, "SESSION_UPDATE", payload)
        committed[seq] = time.time()

    tasks = []
    start = time.monotonic()
    for seq, (org, user) in enumerate(events):
        await asyncio.sleep(max(0.0, start + seq / rate - time.monotonic()))
        tasks.append(asyncio.create_task(commit(seq, org, user)))
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(2)  # the relay drains the tail
    relaying.cancel()
    await asyncio.gather(relaying, return_exceptions=True)
    await asyncio.to_thread(Path(out_path).write_text, json.dumps(committed))
    await client.aclose()
    await uow.engine.dispose()


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "produce":
    asyncio.run(_produce(*sys.argv[2:]))
