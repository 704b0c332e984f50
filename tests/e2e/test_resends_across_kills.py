"""Issue 11: resends across kills store each distinct request once.

Eight clients of the original's kind (no ``clientEventId``, no timestamp) each stream
activity into their own session through the real gateway. Each distinct request has
its own ``Idempotency-Key``; on a 5xx, a 409 or a transport error the client resends
the same request (same key, same body) until it is answered 201 or 202. Meanwhile
sessions is SIGKILLed, then the gateway is SIGKILLed (with requests in flight), the
gateway is restarted, then sessions.

What it proves: every request a client made is stored exactly once (none lost, none
doubled by a resend), the totals sessions ends with are the sums of what the clients
sent, the kills really made clients resend, and while sessions was down events were
still accepted (202, totals pending) rather than refused.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Mesh, TokenFactory, start_mesh

pytestmark = pytest.mark.e2e

CLIENTS = 8
PAUSE = 0.02  # between a client's distinct requests
BACKOFF = 0.1  # before a resend (doubling, capped)
MAX_BACKOFF = 0.5
# A request given up after this long fails the test instead of hanging it (an answer
# lost with the gateway leaves its key "in flight" for the gateway's 60 s).
GIVE_UP_AFTER = 90.0
SETTLE_TIMEOUT = 30.0


@pytest.fixture
def kill_mesh(mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    env = {**mesh_env, "REDIS_PREFIX": f"{mesh_env['REDIS_PREFIX']}:resends"}
    running = start_mesh(env, Path(tmp_path_factory.mktemp("resends")), only=("sessions", "ingest", "gateway"))
    yield running
    running.stop()


@dataclass
class Client:
    """One client of the original's kind and what it saw."""

    index: int
    headers: dict[str, str]
    session_id: str
    made: int = 0  # distinct requests answered 201 or 202
    seconds: int = 0  # their durations
    resends: int = 0
    replayed: int = 0  # answers marked Idempotent-Replayed
    answers: Counter[int] = field(default_factory=Counter)  # final answers by status
    errors: Counter[str] = field(default_factory=Counter)  # every error seen, by status or exception
    longest_error_window: float = 0.0
    unresolved: list[str] = field(default_factory=list)  # requests neither 201/202 nor resendable

    def body(self, n: int) -> dict[str, object]:
        return {"activityType": "active", "durationSeconds": 1 + n % 9, "appName": f"App-{self.index}-{n}"}


async def _send_until_answered(http: httpx.AsyncClient, client: Client, n: int) -> bool:
    """Sends distinct request ``n`` and resends it until 201/202; False if it cannot be."""
    body = client.body(n)
    headers = {**client.headers, "idempotency-key": str(uuid.uuid4())}
    url = f"/sessions/{client.session_id}/activity"
    first_error: float | None = None
    backoff = BACKOFF
    began = time.monotonic()
    while True:
        try:
            reply = await http.post(url, json=body, headers=headers)
        except httpx.TransportError as exc:
            error = type(exc).__name__
        else:
            if reply.status_code in (201, 202):
                if first_error is not None:
                    client.longest_error_window = max(client.longest_error_window, time.monotonic() - first_error)
                client.made += 1
                client.seconds += int(str(body["durationSeconds"]))
                client.answers[reply.status_code] += 1
                client.replayed += reply.headers.get("idempotent-replayed") == "true"
                return True
            if reply.status_code < 500 and reply.status_code != 409:
                client.unresolved.append(f"request {n}: {reply.status_code} {reply.text}")
                return False
            error = str(reply.status_code)
        client.errors[error] += 1
        if first_error is None:
            first_error = time.monotonic()
        if time.monotonic() - began > GIVE_UP_AFTER:
            client.unresolved.append(f"request {n}: still {error} after {GIVE_UP_AFTER}s")
            return False
        client.resends += 1
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)


async def _run(http: httpx.AsyncClient, client: Client, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        if not await _send_until_answered(http, client, n):
            return
        n += 1
        await asyncio.sleep(PAUSE)


async def _stored(owner_engine: AsyncEngine, session_id: str) -> tuple[int, int]:
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select count(*), coalesce(sum(duration_seconds), 0) from ingest.activity_logs "
                    "where session_id = cast(:sid as uuid)"
                ),
                {"sid": session_id},
            )
        ).one()
    return int(row[0]), int(row[1])


async def _doubled(owner_engine: AsyncEngine, session_id: str) -> list[str]:
    """Requests stored more than once (each distinct request has its own app name), with
    when (UTC) each copy was written."""
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "select app_name, array_agg(to_char(created_at at time zone 'UTC', 'HH24:MI:SS.MS') "
                    "order by created_at) from ingest.activity_logs where session_id = cast(:sid as uuid) "
                    "group by app_name having count(*) > 1 order by app_name"
                ),
                {"sid": session_id},
            )
        ).all()
    return [f"{name} written at {', '.join(when)}" for name, when in rows]


async def _total(http: httpx.AsyncClient, client: Client) -> int | None:
    try:
        reply = await http.get(f"/sessions/{client.session_id}", headers=client.headers)
    except httpx.TransportError:
        return None
    if reply.status_code != 200:
        return None
    total: int = reply.json()["total_active_seconds"]
    return total


async def _serving_without_sessions(address: str, timeout: float = 30.0) -> None:
    """Waits until the gateway answers /health with everything but sessions up."""
    deadline = time.monotonic() + timeout
    last = ""
    async with httpx.AsyncClient(timeout=5) as probe:
        while time.monotonic() < deadline:
            try:
                reply = await probe.get(f"http://{address}/health")
            except httpx.TransportError as exc:
                last = type(exc).__name__
            else:
                last = reply.text
                if set(reply.json()["error"]) <= {"sessions"}:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"gateway not serving within {timeout}s (last: {last})")


async def test_resends_across_sessions_and_gateway_kills_store_each_request_once(
    kill_mesh: Mesh, tokens: TokenFactory, owner_engine: AsyncEngine
) -> None:
    began = time.monotonic()
    sessions, gateway = kill_mesh.processes["sessions"], kill_mesh.processes["gateway"]
    async with httpx.AsyncClient(base_url=kill_mesh.gateway_url, timeout=15) as http:
        clients: list[Client] = []
        for index in range(CLIENTS):
            headers = {"authorization": f"Bearer {tokens.user(role='employee', ttl=3600)}"}
            started = await http.post("/sessions/start", json={}, headers=headers)
            assert started.status_code == 201, started.text
            clients.append(Client(index, headers, started.json()["id"]))

        stop = asyncio.Event()
        load = [asyncio.create_task(_run(http, c, stop)) for c in clients]
        timeline: list[str] = []

        def mark(what: str) -> None:
            timeline.append(f"{time.monotonic() - began:.1f}s ({datetime.now(UTC):%H:%M:%S.%f} UTC) {what}")

        try:
            await asyncio.sleep(2)
            mark("kill sessions")
            await asyncio.to_thread(sessions.kill)
            await asyncio.sleep(2.5)  # ingest still knows the sessions' windows: 202s
            mark("kill gateway")
            await asyncio.to_thread(gateway.kill)
            await asyncio.sleep(0.5)
            mark("restart gateway")
            # Not ``restart``: the gateway's /health is 503 while sessions is down.
            await asyncio.to_thread(gateway.start)
            await _serving_without_sessions(gateway.address)
            mark("gateway serving; restart sessions")
            await asyncio.to_thread(sessions.restart)
            await asyncio.to_thread(gateway.wait_healthy)
            mark("all healthy")
            await asyncio.sleep(3)
            mark("stop clients")
            stop.set()
            await asyncio.gather(*load)
            mark("clients done")
        finally:
            stop.set()
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)

        expected = {c.session_id: c.seconds for c in clients}
        deadline = time.monotonic() + SETTLE_TIMEOUT
        totals: dict[str, int | None] = {}
        while True:
            totals = {c.session_id: await _total(http, c) for c in clients}
            stored = {c.session_id: await _stored(owner_engine, c.session_id) for c in clients}
            # Settled: to the sums sent, or (a failure, shown below) to what is stored.
            if totals in (expected, {sid: s for sid, (_, s) in stored.items()}) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        mark("totals equal the sums sent" if totals == expected else "totals NOT the sums sent")

    stored = {c.session_id: await _stored(owner_engine, c.session_id) for c in clients}
    doubled = [f"#{c.index} {d}" for c in clients for d in await _doubled(owner_engine, c.session_id)]
    errors: Counter[str] = sum((c.errors for c in clients), Counter())
    answers: Counter[int] = sum((c.answers for c in clients), Counter())
    made = sum(c.made for c in clients)
    summary = (
        f"{CLIENTS} clients: {made} requests made, {sum(c.resends for c in clients)} resends "
        f"({sum(c.replayed for c in clients)} answered by replay), "
        f"{sum(n for n, _ in stored.values())} events stored, "
        f"{sum(s for _, s in stored.values())} s stored / {sum(expected.values())} s sent / "
        f"{sum(t or 0 for t in totals.values())} s in totals; "
        f"answers {dict(sorted(answers.items()))}; client-visible errors {dict(sorted(errors.items()))}; "
        f"longest error window {max(c.longest_error_window for c in clients):.1f} s; "
        f"{len(doubled)} requests stored twice; took {time.monotonic() - began:.1f} s"
    )
    print(f"\n{summary}\ntimeline: {'; '.join(timeline)}")
    detail = f"{summary}\ntimeline: {timeline}\nstored twice: {doubled}\nper client: " + "; ".join(
        f"#{c.index} made {c.made} ({c.seconds} s), stored {stored[c.session_id]}, total {totals[c.session_id]}, "
        f"resends {c.resends}, errors {dict(c.errors)}"
        for c in clients
    )

    assert not [u for c in clients for u in c.unresolved], f"{[u for c in clients for u in c.unresolved]}\n{detail}"
    for c in clients:
        assert stored[c.session_id] == (c.made, c.seconds), f"client #{c.index}: stored != made\n{detail}"
    assert totals == expected, f"totals never settled to the sums sent\n{detail}"
    assert sum(c.resends for c in clients) > 0 and errors, f"no resends: the kills proved nothing\n{detail}"
    assert answers[202] > 0, f"no 202 during the sessions outage\n{detail}"
    assert any(not k.isdigit() for k in errors), f"no transport error: the gateway kill was not seen\n{detail}"
