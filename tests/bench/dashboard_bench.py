"""The manager's Live page with one large organization (issue: 500 members; goals: first
render under 500 ms, event → DOM update p99 under 100 ms).

- set-up: one organization of ``BENCH_DASH_MEMBERS`` (500) members, an admin and employees
  made through the REST API (sign-up, invites), each with a session started
  (``POST /sessions/start``) and an agent's activity stream held open to ingest (so
  online), which sent one active batch.
- live page server time: the admin's ``GET /ui/live/members`` (the whole table htmx
  loads), sequential requests after a warm-up: wall time p50 / p99, and CPU ms per
  request summed over the mesh's processes, net of the mesh's idle CPU measured just
  before (500 held streams renew presence in the background). Baseline: ``GET /health``
  measured the same way in the same run.
- time to first render: Debian's Chromium through Playwright, logged in through the form,
  navigations to ``/live``; a MutationObserver installed before the page's scripts
  (``add_init_script``) stamps ``performance.now()`` (ms since navigation start,
  ``performance.timeOrigin``) when every member's row is in ``#live-members``.
- event → DOM: the admin's Live page open while the bench sends ``BENCH_DASH_RATE`` (200)
  batches per second on the members' streams, round robin over the members in a shuffled
  order, each flipping its member's state (active seconds only → active, idle seconds
  only → idle). MutationObservers on ``#live-members`` record ``Date.now()`` whenever a
  ``#live-members tr#member-…`` row shows a ``data-state`` other than the last one seen
  for that member (replaced rows and patched attributes alike). Latency = that DOM time minus
  the bench's ``time.time()`` just before the batch was handed to the stream (same
  machine, same clock); each flip matches the member's first record of the expected state
  after its send, within 5 s and before the member's next flip to the same state. Flips
  never shown are counted, not dropped. CPU ms per event over the measured
  ``BENCH_DASH_SECONDS`` (20), per process (the browser's and the bench's too).
- where that latency goes, from the outside of the page: each flip's batch acknowledged;
  its SESSION_UPDATE at a second ``/ws`` client of the admin (this process, outside the
  browser); the same frame reaching the page (a listener of the browser's WebSocket API
  added before the page's module); the page's main-thread long tasks; and the requests
  the page made meanwhile (Resource Timing), whatever its module asks for.

``BENCH_DASH_PROFILE=1`` also samples the mesh's processes with py-spy (the table's
requests, the events) and the page's JavaScript with the DevTools profiler (the events),
and prints where their time goes.

``python -m tests.bench dashboard`` runs it alone. Without Chromium the browser parts are
skipped (the reason is printed) and the server-time rows still come.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import grpc
import httpx
import psutil
import websockets

from tests.bench.harness import BenchEnv, Row, percentiles
from tests.dashboard.conftest import CHROMIUM, LAUNCH_ARGS, Member, invite, log_in, sign_up
from tests.support import Mesh
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc

SCENARIO = "dashboard"
MEMBERS = int(os.environ.get("BENCH_DASH_MEMBERS", "500"))
RATE = float(os.environ.get("BENCH_DASH_RATE", "200"))
SECONDS = float(os.environ.get("BENCH_DASH_SECONDS", "20"))
WARMUP_SECONDS = 3.0
SERVER_REQUESTS = 30
SERVER_WARMUP = 5
LOADS = 5
SHOW_TIMEOUT_MS = 5000.0
# Set: py-spy samples the mesh's processes while the table is requested and while the events
# arrive, and prints where their time goes (``pip install py-spy`` into the venv first).
PROFILE = bool(os.environ.get("BENCH_DASH_PROFILE"))
CHANNELS = 8  # the members' streams share a few HTTP/2 connections to ingest
SETUP_CONCURRENCY = 12
ROW = 'tr[id^="member-"]'

# Before the page's own scripts: when every member's row is in #live-members, the time
# since navigation start (performance.now() counts from performance.timeOrigin), then
# the next animation frame's.
FIRST_RENDER_SCRIPT = """
(() => {
  if (location.pathname !== "/live") return;
  const expected = __EXPECTED__;
  const observer = new MutationObserver(() => {
    const root = document.getElementById("live-members");
    if (!root || root.querySelectorAll('tr[id^="member-"]').length < expected) return;
    observer.disconnect();
    window.__benchRendered = performance.now();
    requestAnimationFrame(() => { window.__benchFrame = performance.now(); });
  });
  observer.observe(document, { childList: true, subtree: true });
  // When each SESSION_UPDATE frame reached the page (the browser's WebSocket API, not the
  // page's module): a listener of our own, added before the module's. Off until recording.
  window.__benchFrames = null;
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (message) => {
        if (!window.__benchFrames || typeof message.data !== "string") return;
        if (!message.data.includes('"SESSION_UPDATE"')) return;
        const t = Date.now();
        try {
          const d = JSON.parse(message.data).data || {};
          window.__benchFrames.push([d.userId, d.total_active_seconds || 0, d.total_idle_seconds || 0, t]);
        } catch { /* not ours to judge */ }
      });
    }
  };
  // Main-thread tasks over 50 ms while recording.
  window.__benchLongTasks = [];
  new PerformanceObserver((list) => {
    if (window.__benchFrames) for (const e of list.getEntries()) window.__benchLongTasks.push(e.duration);
  }).observe({ type: "longtask" });
})();
"""

# Where the first render's time went, from the browser's own timings.
TIMINGS_SCRIPT = """
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fragment = performance.getEntriesByType("resource")
    .filter((e) => new URL(e.name).pathname === "/ui/live/members")[0];
  return {
    rendered: window.__benchRendered,
    frame: window.__benchFrame,
    html: nav ? nav.responseEnd : null,
    fragmentStart: fragment ? fragment.startTime : null,
    fragmentEnd: fragment ? fragment.responseEnd : null,
  };
}
"""

# Every new data-state of a member's row, whether the row was replaced or patched.
RECORD_SCRIPT = """
() => {
  const ROW = 'tr[id^="member-"]';
  const root = document.getElementById("live-members");
  const last = new Map();
  const records = [];
  window.__benchRecords = records;
  const seen = (row) => {
    const userId = row.id.slice(7);
    const state = row.getAttribute("data-state");
    if (last.get(userId) === state) return;
    last.set(userId, state);
    records.push({ userId, state, t: Date.now() });
  };
  // Rows replaced (or the table): childList of #live-members and of every element between
  // it and the rows, none with subtree, so the tickers' text changes inside the rows'
  // cells cost the page no records. Rows patched in place: data-state, over the subtree.
  const rows = new MutationObserver((mutations) => {
    for (const m of mutations) {
      for (const node of m.addedNodes) {
        if (!(node instanceof Element)) continue;
        if (node.matches(ROW)) seen(node);
        for (const row of node.querySelectorAll(ROW)) seen(row);
        watch(node);
      }
    }
  });
  const watched = new WeakSet();
  const watch = (scope) => {
    for (const row of scope.querySelectorAll(ROW)) {
      for (let up = row.parentElement; up && up !== root && !watched.has(up); up = up.parentElement) {
        watched.add(up);
        rows.observe(up, { childList: true });
      }
    }
  };
  rows.observe(root, { childList: true });
  watch(root);
  new MutationObserver((mutations) => {
    for (const m of mutations) if (m.target instanceof Element && m.target.matches(ROW)) seen(m.target);
  }).observe(root, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
  for (const row of root.querySelectorAll(ROW)) last.set(row.id.slice(7), row.getAttribute("data-state"));
  performance.clearResourceTimings();
  performance.setResourceTimingBufferSize(100000);
  window.__benchSince = performance.now();
  window.__benchFrames = [];
  return last.size;
}
"""

# The page's own requests since the recording started (whatever its module asks for): per
# path, how many and how long each took (the browser's view, queueing in it included).
REQUESTS_SCRIPT = """
() => {
  const found = {};
  for (const e of performance.getEntriesByType("resource")) {
    if (e.startTime < window.__benchSince) continue;
    const path = new URL(e.name).pathname.replace(/[0-9a-f-]{36}/g, "{id}");
    (found[path] = found[path] || []).push([e.startTime, e.duration]);
  }
  found.__window = performance.now() - window.__benchSince;
  return found;
}
"""


# --- CPU of the mesh's processes ------------------------------------------------------


def _cpu_seconds(process: psutil.Process, children: bool = True) -> float:
    """User + system seconds of ``process`` (and its children)."""
    total = 0.0
    for p in (process, *(process.children(recursive=True) if children else ())):
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


class CpuMeter:
    """CPU seconds per mesh process (and the browser's, when one runs) between two reads."""

    def __init__(self, mesh: Mesh) -> None:
        self.processes = {
            name: (psutil.Process(p.proc.pid), True) for name, p in mesh.processes.items() if p.proc is not None
        }

    def add(self, name: str, process: psutil.Process, children: bool = True) -> None:
        self.processes[name] = (process, children)

    def read(self) -> dict[str, float]:
        return {name: _cpu_seconds(p, children) for name, (p, children) in self.processes.items()}

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in before}


def _mesh_ms(spent: dict[str, float], mesh: Mesh) -> float:
    return sum(v for k, v in spent.items() if k in mesh.processes) * 1000


def _summarize_cpu_profile(profile: dict[str, Any]) -> str:
    """The page's JS self time per function (CDP Profiler.stop's profile), top first."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    self_ms: dict[str, float] = {}
    deltas = profile.get("timeDeltas", [])
    for sample, delta in zip(profile.get("samples", []), [*deltas[1:], 0], strict=True):
        frame = nodes[sample]["callFrame"]
        where = frame["url"].rsplit("/", 1)[-1]
        name = (
            f"{frame['functionName'] or '(anonymous)'} ({where}:{frame['lineNumber'] + 1})"
            if where
            else frame["functionName"]
        )
        self_ms[name] = self_ms.get(name, 0.0) + delta / 1000
    total = sum(self_ms.values()) or 1.0
    top = sorted(self_ms.items(), key=lambda kv: -kv[1])[:20]
    lines = [f"## events: the page's main thread, {total:.0f} ms sampled, self time:"]
    lines += [f"  {100 * ms / total:5.1f}%  {ms:8.0f} ms  {name}" for name, ms in top]
    return "\n".join(lines)


class Profiler:
    """py-spy on each mesh process for a phase; prints a summary per process after it."""

    def __init__(self, mesh: Mesh, work_dir: Path, phase: str) -> None:
        self.mesh, self.work_dir, self.phase = mesh, work_dir, phase
        self.spies: list[asyncio.subprocess.Process] = []
        self.outputs: dict[str, Path] = {}

    async def start(self, seconds: float) -> None:
        if not PROFILE:
            return
        from tests.bench.profile import _py_spy

        spy = _py_spy()
        for name, process in self.mesh.processes.items():
            if process.proc is None or name == "scheduler":
                continue
            self.outputs[name] = self.work_dir / f"dash-{self.phase}-{name}.collapsed"
            command = [spy, "record", "--pid", str(process.proc.pid), "--duration", str(max(1, int(seconds)))]
            command += ["--rate", "100", "--format", "raw", "--output", str(self.outputs[name]), "--nonblocking"]
            self.spies.append(await asyncio.create_subprocess_exec(*command, stdout=DEVNULL, stderr=DEVNULL))

    async def report(self) -> None:
        if not PROFILE:
            return
        from tests.bench.profile import _summary

        for spy in self.spies:
            await spy.wait()
        for name, raw in self.outputs.items():
            if not raw.exists():
                continue
            total, _, own, project = _summary(raw)
            lines = [f"## {self.phase}: {name}: {total} samples (100/s)", "self:"]
            lines += [f"  {100 * n / max(1, total):5.1f}%  {frame}" for frame, n in own]
            lines += ["the project's functions, inclusive:"]
            lines += [f"  {100 * n / max(1, total):5.1f}%  {frame}" for frame, n in project]
            print("\n".join(lines), file=sys.stderr)


# --- set-up -----------------------------------------------------------------------------


@dataclass
class Worker:
    member: Member
    session_id: str
    stream_token: str
    state: str = "active"  # what the last batch sent made them
    active_sent: int = 0  # seconds of each kind sent so far: the session's totals once applied
    idle_sent: int = 0


async def _gather_limited(limit: int, jobs: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def _organization(env: BenchEnv, http: httpx.AsyncClient) -> list[Worker]:
    admin = await sign_up(http)
    employees: list[Member] = await _gather_limited(
        SETUP_CONCURRENCY,
        [partial(invite, http, admin, f"Member {n:04d}") for n in range(1, MEMBERS)],
    )
    members = [admin, *employees]

    async def start(member: Member) -> Worker:
        reply = await http.post("/sessions/start", json={}, headers=member.headers)
        assert reply.status_code == 201, reply.text
        token = env.tokens.user(member.organization_id, member.id, member.role, ttl=3600)
        return Worker(member, reply.json()["id"], token)

    workers: list[Worker] = await _gather_limited(
        SETUP_CONCURRENCY,
        [partial(start, m) for m in members],
    )
    return workers


class AgentStream:
    """A member's StreamActivity held open (tests/dashboard/agent_stream.py's protocol),
    one batch at a time, on a shared channel."""

    def __init__(self, channel: grpc.aio.Channel, worker: Worker) -> None:
        self.worker = worker
        self._queue: asyncio.Queue[pb.StreamActivityRequest | None] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self.failure = ""  # why a batch failed first, if one did
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        metadata = (("authorization", f"Bearer {worker.stream_token}"),)
        self._call = stub.StreamActivity(self._requests(), metadata=metadata)

    async def _requests(self) -> AsyncIterator[pb.StreamActivityRequest]:
        while (batch := await self._queue.get()) is not None:
            yield batch

    async def send(self, state: str) -> tuple[float, float, bool]:
        """(sent, acknowledged) epoch ms and whether ingest accepted the batch."""
        async with self._lock:
            batch = pb.StreamActivityRequest(batch_id=uuid.uuid4().hex, session_id=self.worker.session_id)
            batch.agent_time.GetCurrentTime()
            kind = pb.ACTIVITY_TYPE_ACTIVE if state == "active" else pb.ACTIVITY_TYPE_IDLE
            event = batch.events.add(
                activity_type=kind, duration_seconds=1, app_name="editor", client_event_id=uuid.uuid4().hex
            )
            event.timestamp.GetCurrentTime()
            sent = time.time() * 1000
            await self._queue.put(batch)
            try:
                ack = await asyncio.wait_for(self._call.read(), 10)
            except (TimeoutError, grpc.aio.AioRpcError) as exc:
                self.failure = self.failure or f"{type(exc).__name__}: {exc}"[:300]
                return sent, time.time() * 1000, False
            ok = isinstance(ack, pb.StreamActivityResponse) and ack.status_code == 0
            if not ok:
                self.failure = self.failure or f"ack {ack!r}"[:300]
            return sent, time.time() * 1000, ok

    async def close(self) -> None:
        await self._queue.put(None)
        self._call.cancel()


def _update_latency(updates: dict[str, list[tuple[float, int, int]]], flip: Flip) -> float | None:
    """Send → the first SESSION_UPDATE carrying the flip's totals, within the timeout."""
    for at, active, idle in updates.get(flip.user_id, []):
        if active >= flip.active_total and idle >= flip.idle_total:
            return at - flip.sent if at - flip.sent <= SHOW_TIMEOUT_MS else None
    return None


class FeedWatcher:
    """A second /ws client as the admin (not the page): when each member's SESSION_UPDATE
    reached a browser's socket, to tell the mesh's share of event → DOM from the page's."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.updates: dict[str, list[tuple[float, int, int]]] = {}  # user → (ms, active, idle)
        self._task: asyncio.Task[None] | None = None
        self._ws: Any = None

    async def __aenter__(self) -> FeedWatcher:
        self._ws = await websockets.connect(self.url, compression=None, open_timeout=30, max_queue=None)
        ready = json.loads(await self._ws.recv())
        assert ready["event"] == "ready", ready
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self._ws:
                now = time.time() * 1000
                frame = json.loads(raw)
                data = frame.get("data") or {}
                if frame.get("event") == "SESSION_UPDATE" and isinstance(data.get("userId"), str):
                    totals = int(data.get("total_active_seconds") or 0), int(data.get("total_idle_seconds") or 0)
                    self.updates.setdefault(data["userId"], []).append((now, *totals))

    def latency(self, flip: Flip) -> float | None:
        return _update_latency(self.updates, flip)

    async def __aexit__(self, *exc: object) -> None:
        await self._ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


# --- server time ------------------------------------------------------------------------


async def _timed_requests(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], meter: CpuMeter
) -> tuple[list[float], dict[str, float]]:
    """Wall ms of each of SERVER_REQUESTS sequential GETs after SERVER_WARMUP, and the CPU
    seconds per process they took."""
    for _ in range(SERVER_WARMUP):
        reply = await http.get(path, headers=headers)
        if reply.status_code != 200:
            raise AssertionError(f"GET {path} answered {reply.status_code}: {reply.text[:300]}")
    walls: list[float] = []
    before = meter.read()
    for _ in range(SERVER_REQUESTS):
        started = time.perf_counter()
        reply = await http.get(path, headers=headers)
        walls.append((time.perf_counter() - started) * 1000)
        if reply.status_code != 200:
            raise AssertionError(f"GET {path} answered {reply.status_code}: {reply.text[:300]}")
    return walls, CpuMeter.spent(before, meter.read())


async def _idle_rate(meter: CpuMeter, mesh: Mesh, seconds: float = 3.0) -> float:
    """The mesh's CPU ms per wall second with nothing asked of it."""
    before, started = meter.read(), time.monotonic()
    await asyncio.sleep(seconds)
    return _mesh_ms(CpuMeter.spent(before, meter.read()), mesh) / (time.monotonic() - started)


async def _server_time(
    http: httpx.AsyncClient, mesh: Mesh, meter: CpuMeter, admin: Member, one_row: str, work_dir: Path
) -> list[Row]:
    idle = await _idle_rate(meter, mesh)
    rows_label = f"{MEMBERS} rows"
    measured: dict[str, tuple[float, float, float]] = {}
    for name, path, headers, required in (
        ("GET /health", "/health", {}, True),
        (f"GET /ui/live/members ({rows_label})", "/ui/live/members", admin.headers, True),
        ("GET /ui/live/members/{id} (one row)", f"/ui/live/members/{one_row}", admin.headers, False),
    ):
        profiler = Profiler(mesh, work_dir, "table")
        if path == "/ui/live/members":
            await profiler.start(4)
        try:
            walls, spent = await _timed_requests(http, path, headers, meter)
            await profiler.report()
        except AssertionError as failed:
            if required:
                raise
            print(f"dashboard: {name} not measured: {failed}", file=sys.stderr)
            continue
        cpu = max(0.0, _mesh_ms(spent, mesh) - idle * sum(walls) / 1000) / len(walls)
        p50, p99, _ = percentiles(walls)
        measured[name] = (p50, p99, cpu)
        detail = ", ".join(f"{k} {v * 1000 / len(walls):.1f}" for k, v in spent.items())
        print(f"dashboard: {name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms; CPU ms/request {detail}", file=sys.stderr)
    base = "GET /health"
    h50, h99, hcpu = measured.pop(base)
    found: list[Row] = []
    for name, (p50, p99, cpu) in measured.items():
        found += [
            Row(SCENARIO, f"{name} p50 (ms)", p50, h50, base),
            Row(SCENARIO, f"{name} p99 (ms)", p99, h99, base),
            Row(SCENARIO, f"{name} mesh CPU ms / request", cpu, hcpu, base),
        ]
    return [*found, Row(SCENARIO, "mesh idle CPU ms / s (held streams; netted out above)", idle)]


# --- the browser ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _browser() -> AsyncIterator[tuple[Any, psutil.Process | None]]:
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="wp-bench-chromium-")
    try:
        async with async_playwright() as playwright:
            launched = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True, env={**os.environ, "HOME": profile}
            )
            try:
                yield launched, _chromium_process()
            finally:
                await launched.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _chromium_process() -> psutil.Process | None:
    """The browser's main process (its renderers and helpers are its children)."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chrom" in child.name().lower() and "chrom" not in child.parent().name().lower():
                return child
    return None


async def _first_render(page: Any) -> list[Row]:
    rendered: list[float] = []
    framed: list[float] = []
    fragment_start: list[float] = []
    fragment_fetch: list[float] = []
    for _ in range(LOADS):
        await page.goto("/live", wait_until="commit")
        await page.wait_for_function("() => window.__benchFrame !== undefined", timeout=30_000)
        timings = await page.evaluate(TIMINGS_SCRIPT)
        rendered.append(timings["rendered"])
        framed.append(timings["frame"])
        if timings["fragmentStart"] is not None and timings["fragmentEnd"] is not None:
            fragment_start.append(timings["fragmentStart"])
            fragment_fetch.append(timings["fragmentEnd"] - timings["fragmentStart"])
        print(f"dashboard: first render {timings}", file=sys.stderr)
    p50, _, top = percentiles(rendered)
    rows = [
        Row(SCENARIO, f"first render of {MEMBERS} rows p50 (ms since navigation start)", p50, goal="< 500"),
        Row(SCENARIO, f"first render max of {LOADS} loads (ms)", top, goal="< 500"),
        Row(SCENARIO, "  next animation frame after it p50 (ms)", statistics.median(framed)),
    ]
    if fragment_fetch:
        rows += [
            Row(SCENARIO, "  of which until the table's request starts p50 (ms)", statistics.median(fragment_start)),
            Row(SCENARIO, "  of which the table's request p50 (ms, browser's view)", statistics.median(fragment_fetch)),
        ]
    return rows


@dataclass
class Flip:
    user_id: str
    state: str
    sent: float
    acked: float
    ok: bool
    measured: bool
    active_total: int  # the session's totals once this batch is applied
    idle_total: int


async def _drive(streams: list[AgentStream], rate: float, warmup: float, seconds: float) -> list[Flip]:
    """Sends flips at ``rate`` per second, round robin over ``streams``, for warmup + seconds."""
    flips: list[Flip] = []
    tasks: list[asyncio.Task[None]] = []

    async def flip(stream: AgentStream, measured: bool) -> None:
        worker = stream.worker
        state = "idle" if worker.state == "active" else "active"
        worker.state = state
        if state == "active":
            worker.active_sent += 1
        else:
            worker.idle_sent += 1
        totals = worker.active_sent, worker.idle_sent
        sent, acked, ok = await stream.send(state)
        flips.append(Flip(worker.member.id, state, sent, acked, ok, measured, *totals))

    order = list(streams)
    random.Random(7).shuffle(order)
    total = int(rate * (warmup + seconds))
    warm = int(rate * warmup)
    start = time.monotonic()
    for i in range(total):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        tasks.append(asyncio.create_task(flip(order[i % len(order)], i >= warm)))
    await asyncio.gather(*tasks)
    return flips


def _achieved(flips: list[Flip]) -> float:
    """Flips per second between the first and the last send."""
    if len(flips) < 2:
        return 0.0
    sent = [f.sent for f in flips]
    return (len(sent) - 1) / ((max(sent) - min(sent)) / 1000)


def _match(flips: list[Flip], records: list[dict[str, Any]]) -> tuple[list[float], list[float], int]:
    """(send → DOM ms, ack → DOM ms) of the measured flips shown, and how many never were."""
    shown: dict[str, list[tuple[float, str]]] = {}
    for r in records:
        shown.setdefault(r["userId"], []).append((float(r["t"]), r["state"]))
    by_user: dict[str, list[Flip]] = {}
    for f in sorted(flips, key=lambda f: f.sent):
        by_user.setdefault(f.user_id, []).append(f)
    from_send: list[float] = []
    from_ack: list[float] = []
    unmatched = 0
    for user, sent in by_user.items():
        for i, f in enumerate(sent):
            if not f.measured:
                continue
            until = f.sent + SHOW_TIMEOUT_MS
            later = next((g.sent for g in sent[i + 1 :] if g.state == f.state), None)
            if later is not None:
                until = min(until, later)
            hit = next((t for t, state in shown.get(user, []) if state == f.state and f.sent <= t < until), None)
            if hit is None:
                unmatched += 1
            else:
                from_send.append(hit - f.sent)
                from_ack.append(hit - f.acked)
    return from_send, from_ack, unmatched


async def _updates(
    page: Any, streams: list[AgentStream], mesh: Mesh, meter: CpuMeter, work_dir: Path, feed: FeedWatcher
) -> list[Row]:
    await page.goto("/live")
    await page.locator(f"#live-members {ROW}").nth(MEMBERS - 1).wait_for(state="attached", timeout=30_000)
    await page.wait_for_function(
        "() => (document.getElementById('connection')?.textContent || '').startsWith('Connected')", timeout=30_000
    )
    watched = await page.evaluate(RECORD_SCRIPT)
    print(f"dashboard: watching {watched} rows; sending {RATE:.0f} flips/s for {SECONDS:.0f} s", file=sys.stderr)

    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        warm = asyncio.create_task(_drive(streams, RATE, WARMUP_SECONDS, SECONDS))
        await asyncio.sleep(WARMUP_SECONDS)
        before, started = meter.read(), time.monotonic()
        profiler = Profiler(mesh, work_dir, "events")
        await profiler.start(SECONDS - 1)
        cdp = None
        if PROFILE:
            cdp = await page.context.new_cdp_session(page)
            await cdp.send("Profiler.enable")
            await cdp.send("Profiler.setSamplingInterval", {"interval": 1000})
            await cdp.send("Profiler.start")
        flips = await warm
        spent, elapsed = CpuMeter.spent(before, meter.read()), time.monotonic() - started
    finally:
        gc.enable()
        gc.unfreeze()
    await asyncio.sleep(SHOW_TIMEOUT_MS / 1000)  # the tail shows (or never does)
    await profiler.report()
    if cdp is not None:
        print(_summarize_cpu_profile((await cdp.send("Profiler.stop"))["profile"]), file=sys.stderr)
    records: list[dict[str, Any]] = await page.evaluate("() => window.__benchRecords")
    page_updates: dict[str, list[tuple[float, int, int]]] = {}
    for user_id, active, idle, at in await page.evaluate("() => window.__benchFrames"):
        page_updates.setdefault(user_id, []).append((float(at), int(active), int(idle)))
    long_tasks: list[float] = await page.evaluate("() => window.__benchLongTasks")
    timed: dict[str, Any] = await page.evaluate(REQUESTS_SCRIPT)
    window_ms = float(timed.pop("__window"))
    requests = {path: [d for _, d in entries] for path, entries in timed.items()}
    for path, entries in sorted(timed.items()):
        q50, q99, _ = percentiles([d for _, d in entries])
        busy = sum(d for _, d in entries) / window_ms * 100
        print(
            f"dashboard: the page requested {path} {len(entries)} times in {window_ms / 1000:.1f} s: "
            f"p50 {q50:.0f} ms, p99 {q99:.0f} ms, in flight {busy:.0f} % of the time; "
            f"(start, ms): {[(round(a), round(d)) for a, d in entries[:40]]}",
            file=sys.stderr,
        )

    measured = [f for f in flips if f.measured]
    refused = sum(1 for f in measured if not f.ok)
    from_send, from_ack, unmatched = _match(flips, records)
    p50, p99, top = percentiles(from_send)
    a50, a99, _ = percentiles(from_ack)
    ack50, ack99, _ = percentiles([f.acked - f.sent for f in measured])
    fed = [x for x in (feed.latency(f) for f in measured) if x is not None]
    f50, f99, _ = percentiles(fed)
    framed = [x for x in (_update_latency(page_updates, f) for f in measured) if x is not None]
    w50, w99, _ = percentiles(framed)
    # The flips sent during the measured window (the last ones' acks came after it).
    events = max(1, len(measured))
    per_event = {name: v * 1000 / events for name, v in spent.items()}
    print(
        "dashboard: CPU % of one core under load: "
        + ", ".join(f"{k} {v / elapsed * 100:.0f}" for k, v in spent.items()),
        file=sys.stderr,
    )
    if refused:
        why = next((st.failure for st in streams if st.failure), "")
        print(f"dashboard: {refused} batches refused or unacknowledged, e.g. {why}", file=sys.stderr)
    label = f"{RATE:.0f} events/s, {MEMBERS} members"
    rows = [
        Row(SCENARIO, f"event→DOM p50 (ms; {label})", p50, a50, "from its ack"),
        Row(SCENARIO, "event→DOM p99 (ms)", p99, a99, "from its ack", "< 100"),
        Row(SCENARIO, "event→DOM max (ms)", top),
        Row(SCENARIO, "flips sent in the measured window", float(len(measured))),
        Row(SCENARIO, "  of which sent per s (achieved)", _achieved(measured), goal=f"{RATE:.0f}"),
        Row(SCENARIO, "flips shown in the DOM within 5 s", float(len(from_send))),
        Row(SCENARIO, "flips never shown (unmatched)", float(unmatched), goal="0"),
        Row(SCENARIO, "batches refused or unacknowledged", float(refused), goal="0"),
        Row(SCENARIO, "  batch send→ack p50 / p99 (ms)", ack50, ack99, "p99"),
        Row(SCENARIO, "  send→SESSION_UPDATE on a 2nd /ws client p50 / p99 (ms)", f50, f99, "p99"),
        Row(SCENARIO, "  SESSION_UPDATEs seen there within 5 s", float(len(fed))),
        Row(SCENARIO, "  send→SESSION_UPDATE frame in the page p50 / p99 (ms)", w50, w99, "p99"),
        Row(SCENARIO, "  SESSION_UPDATE frames in the page within 5 s", float(len(framed))),
        Row(SCENARIO, "  page main-thread long tasks: count / total ms", float(len(long_tasks)), sum(long_tasks), "ms"),
        *(
            Row(SCENARIO, f"  page's GET {path}: requests / p50 ms", float(len(d)), percentiles(d)[0], "p50 ms")
            for path, d in sorted(requests.items())
        ),
        Row(SCENARIO, "mesh CPU ms / event", _mesh_ms(spent, mesh) / events),
    ]
    rows += [Row(SCENARIO, f"  of which {name} CPU ms / event", per_event[name]) for name in mesh.processes]
    if "chromium" in per_event:
        rows.append(Row(SCENARIO, "browser (Chromium, all processes) CPU ms / event", per_event["chromium"]))
    if "bench" in per_event:
        rows.append(Row(SCENARIO, "load generator (the bench process) CPU ms / event", per_event["bench"]))
    return rows


# --- the scenario -----------------------------------------------------------------------


async def run(env: BenchEnv) -> list[Row]:
    mesh = env.start_mesh()
    meter = CpuMeter(mesh)
    rows: list[Row] = []
    channels = [
        grpc.aio.insecure_channel(mesh.address("ingest"), options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CHANNELS)
    ]
    streams: list[AgentStream] = []
    try:
        async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=60) as http:
            started = time.monotonic()
            workers = await _organization(env, http)
            took = time.monotonic() - started
            print(f"dashboard: {len(workers)} members with sessions in {took:.1f} s", file=sys.stderr)
            rows.append(Row(SCENARIO, f"set-up: {len(workers)} members with sessions (s)", took))
            admin = workers[0].member

            # Every member's agent online and active (the first batch is contact too).
            streams = [AgentStream(channels[n % CHANNELS], w) for n, w in enumerate(workers)]
            sent = await _gather_limited(50, [partial(s.send, "active") for s in streams])
            for stream in streams:
                stream.worker.active_sent += 1
            refused = [st.failure for st, (_, _, ok) in zip(streams, sent, strict=True) if not ok]
            if refused:
                print(f"dashboard: {len(refused)} first batches failed, e.g. {refused[0]}", file=sys.stderr)
            rows.append(Row(SCENARIO, "members whose first batch failed", float(len(refused)), goal="0"))
            await asyncio.sleep(1.0)  # the last presence and activity events settle

            rows += await _server_time(http, mesh, meter, admin, workers[-1].member.id, env.work_dir)

            reason = _browser_missing()
            if reason:
                print(f"dashboard: browser scenarios skipped: {reason}")
                return rows
            async with _browser() as (browser, chromium):
                meter.add("bench", psutil.Process(), children=False)
                if chromium is not None:
                    meter.add("chromium", chromium)
                context = await browser.new_context(base_url=mesh.gateway_url, viewport={"width": 1280, "height": 900})
                context.set_default_timeout(30_000)
                await context.add_init_script(FIRST_RENDER_SCRIPT.replace("__EXPECTED__", str(MEMBERS)))
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                await log_in(page, admin)
                rows += await _first_render(page)
                feed_url = f"ws://{mesh.address('gateway')}/ws?token={admin.token}"
                async with FeedWatcher(feed_url) as feed:
                    rows += await _updates(page, streams, mesh, meter, env.work_dir, feed)
                if errors:
                    print(f"dashboard: page errors: {errors[:5]}", file=sys.stderr)
                await context.close()
    finally:
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.close()
        for ch in channels:
            await ch.close()
        mesh.stop()
    return rows


def _browser_missing() -> str:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        return f"playwright is not importable ({exc})"
    return ""
