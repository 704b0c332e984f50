"""BufferedRateLimiter: per-user budgets counted locally and reconciled with the real Redis
in one round trip per flush — shared by replicas, exact in one process, enforced locally
(and never lost) while Redis is unreachable, with bounded memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from tests.support import eventually
from workpulse.errors import RateLimited
from workpulse.ratelimit import BufferedRateLimiter, Limiter, RateLimiter
from workpulse.redisconn import Keys, create_client

WINDOW = 60
T0 = 1_700_000_040.0  # the start of a 60 s window (a multiple of 60)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingRedis(aioredis.Redis):
    """Counts what reaches Redis: direct commands and pipelines (one round trip each)."""

    round_trips = 0
    commands = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        self.commands += 1
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        run = pipe.execute

        async def execute(raise_on_error: bool = True) -> list[Any]:
            self.round_trips += 1
            self.commands += len(pipe.command_stack)
            return await run(raise_on_error)

        pipe.execute = execute  # type: ignore[method-assign]
        return pipe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proxy:
    """A TCP forwarder to Redis that can be taken down (connections cut, port closed)
    and brought back on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}:lb:{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def counting(server_urls: tuple[str, str]) -> AsyncIterator[CountingRedis]:
    client = cast(CountingRedis, CountingRedis.from_url(server_urls[1], decode_responses=True))
    yield client
    await client.aclose()


@pytest.fixture
async def unreachable() -> AsyncIterator[aioredis.Redis]:
    client = create_client(f"redis://127.0.0.1:{_free_port()}/0")
    yield client
    await client.aclose()


def window_key(key: str, at: float = T0, window: int = WINDOW) -> str:
    return f"{key}:{window}s:{int(at // window)}"


async def spend(limiter: BufferedRateLimiter, key: str, n: int, limit: int) -> int:
    """Hits ``key`` n times; returns how many were admitted."""
    admitted = 0
    for _ in range(n):
        try:
            await limiter.hit(key, limit=limit, window_seconds=WINDOW, what="things")
            admitted += 1
        except RateLimited:
            pass
    return admitted


async def stored(client: aioredis.Redis, key: str) -> int | None:
    value = await client.get(key)
    return None if value is None else int(value)


def test_both_limiters_fit_the_budget_protocol(redis_client: aioredis.Redis) -> None:
    limiters: list[Limiter] = [RateLimiter(redis_client), BufferedRateLimiter(redis_client)]
    assert len(limiters) == 2


async def test_refuses_the_hit_past_the_limit_in_one_process(redis_client: aioredis.Redis, prefix: str) -> None:
    clock = Clock(T0 + 45.2)
    limiter = BufferedRateLimiter(redis_client, clock=clock)
    key = f"{prefix}:u1"
    for _ in range(5):
        await limiter.hit(key, limit=5, window_seconds=WINDOW, what="things")
    with pytest.raises(RateLimited) as refused:
        await limiter.hit(key, limit=5, window_seconds=WINDOW, what="things")
    assert refused.value.retry_after == 15  # ceil(60 - 45.2)
    assert refused.value.message == "too many things; retry later"
    assert await limiter.flush() is True
    # Every attempt is counted, as RateLimiter counts them; the key expires with its window.
    assert await stored(redis_client, window_key(key)) == 6
    assert 14 <= await redis_client.ttl(window_key(key)) <= 16
    with pytest.raises(RateLimited):
        await limiter.hit(key, limit=5, window_seconds=WINDOW, what="things")
    # Another key has its own budget.
    await limiter.hit(f"{prefix}:u2", limit=5, window_seconds=WINDOW, what="things")


async def test_two_replicas_share_the_budget(redis_client: aioredis.Redis, prefix: str) -> None:
    clock = Clock(T0 + 1)
    a = BufferedRateLimiter(redis_client, clock=clock)
    b = BufferedRateLimiter(redis_client, clock=clock)
    key = f"{prefix}:shared"
    limit, per_interval = 100, 10
    admitted = attempts = 0
    refused_round = None
    for round_no in range(1, 9):
        got = await spend(a, key, per_interval, limit) + await spend(b, key, per_interval, limit)
        admitted += got
        attempts += 2 * per_interval
        assert await a.flush() and await b.flush()
        if got == 0 and refused_round is None:
            refused_round = round_no
    # A learns B's hits one flush late: the overshoot is B's hits of one interval, within
    # the documented bound (2 replicas x 10 hits per flush interval x 2 intervals = 40).
    assert admitted == 110
    assert admitted - limit <= 2 * per_interval * 2
    assert refused_round == 7
    assert await stored(redis_client, window_key(key)) == attempts == 160


async def test_an_idle_replica_overshoots_by_at_most_its_own_hits_of_one_interval(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    clock = Clock(T0 + 1)
    a = BufferedRateLimiter(redis_client, clock=clock)
    b = BufferedRateLimiter(redis_client, clock=clock)
    key = f"{prefix}:idle"
    assert await spend(a, key, 100, 100) == 100
    assert await a.flush()
    # B has not flushed since A spent the budget: its hits of this interval are admitted...
    assert await spend(b, key, 3, 100) == 3
    assert await b.flush()
    # ... and refused once it has flushed; A refuses after its next flush too.
    assert await spend(b, key, 5, 100) == 0
    assert await spend(a, key, 1, 100) == 0  # 100 known + 1 local > 100
    assert await a.flush() and await b.flush()
    assert await stored(redis_client, window_key(key)) == 109


async def test_no_redis_round_trip_per_hit(counting: CountingRedis, prefix: str) -> None:
    clock = Clock(T0 + 1)
    limiter = BufferedRateLimiter(counting, clock=clock)
    keys = [f"{prefix}:k{i}" for i in range(10)]
    await limiter.hit(f"{prefix}:warm-up", limit=10, window_seconds=WINDOW, what="things")
    assert await limiter.flush()  # loads the script if Redis does not have it yet
    counting.round_trips = counting.commands = 0

    for batch in range(4):
        for i in range(250):
            await limiter.hit(keys[i % 10], limit=6000, window_seconds=WINDOW, what="things")
        assert counting.round_trips == batch  # hits alone never reach Redis
        assert await limiter.flush()
    assert counting.round_trips == 4  # one pipeline per flush
    assert counting.commands == 40  # keys without a hash tag: one script call per key and flush
    assert await limiter.flush()  # nothing unsent: no round trip at all
    assert counting.round_trips == 4
    for key in keys:
        assert await stored(counting, window_key(key)) == 100


async def test_a_tenants_keys_go_in_one_script_call(counting: CountingRedis, prefix: str) -> None:
    clock = Clock(T0 + 1)
    limiter = BufferedRateLimiter(counting, clock=clock)
    keys = Keys(prefix)
    await limiter.hit(keys.key("warm-up"), limit=10, window_seconds=WINDOW, what="things")
    assert await limiter.flush()
    counting.round_trips = counting.commands = 0

    small = [keys.tenant("org-a", "ratelimit", "ingest", f"user-{i}") for i in range(20)]
    large = [keys.tenant("org-b", "ratelimit", "ingest", f"user-{i}") for i in range(1200)]
    for key in small + large + small + [small[0]] * 10:
        await limiter.hit(key, limit=6000, window_seconds=WINDOW, what="things")
    assert await limiter.flush()
    assert counting.round_trips == 1
    assert counting.commands == 1 + 3  # org-a in one call, org-b's 1200 keys in calls of 500
    assert [await stored(counting, window_key(k)) for k in small] == [12] + [2] * 19
    assert [await stored(counting, window_key(k)) for k in large] == [1] * 1200
    # Each key learned its own total from the call's reply.
    assert await spend(limiter, small[5], 5999, 6000) == 5998
    assert await spend(limiter, small[0], 5989, 6000) == 5988
    assert await spend(limiter, large[-1], 6000, 6000) == 5999


async def test_background_task_flushes_1000_hits_in_a_handful_of_calls(counting: CountingRedis, prefix: str) -> None:
    key = f"{prefix}:bg"
    limiter = BufferedRateLimiter(counting, flush_seconds=0.05, clock=Clock(T0 + 1))
    async with limiter:
        for _ in range(1000):
            await limiter.hit(key, limit=6000, window_seconds=WINDOW, what="things")
    # The hits never yield to the loop: the task (woken at 600 unsent) flushes once and
    # close() once more; a script load may add one.
    assert 1 <= counting.round_trips <= 3
    assert await stored(counting, window_key(key)) == 1000


async def test_a_key_nearing_its_limit_is_flushed_at_once(redis_client: aioredis.Redis, prefix: str) -> None:
    clock = Clock(T0 + 1)
    limiter = BufferedRateLimiter(redis_client, flush_seconds=30, eager_fraction=0.1, clock=clock)
    quiet, busy = f"{prefix}:quiet", f"{prefix}:busy"
    async with limiter:
        for _ in range(9):
            await limiter.hit(quiet, limit=100, window_seconds=WINDOW, what="things")
        for _ in range(5):
            await asyncio.sleep(0)
        assert limiter.unsent_keys == 1  # 9 < 10 % of 100: no early flush
        for _ in range(10):
            await limiter.hit(busy, limit=100, window_seconds=WINDOW, what="things")

        async def flushed() -> bool:
            return await stored(redis_client, window_key(busy)) == 10

        await eventually(flushed, timeout=5, what="eager flush")  # long before the 30 s tick
        assert await stored(redis_client, window_key(quiet)) == 9  # the flush sends everything
        assert limiter.unsent_keys == 0


async def test_window_rollover_resets_and_drops_the_old_window(redis_client: aioredis.Redis, prefix: str) -> None:
    clock = Clock(T0 + 59.9)
    limiter = BufferedRateLimiter(redis_client, clock=clock)
    key = f"{prefix}:roll"
    assert await spend(limiter, key, 6, 5) == 5
    with pytest.raises(RateLimited) as refused:
        await limiter.hit(key, limit=5, window_seconds=WINDOW, what="things")
    assert refused.value.retry_after == 1

    clock.now = T0 + WINDOW + 0.1  # the next window
    assert await spend(limiter, key, 6, 5) == 5
    assert limiter.tracked_keys == 1
    assert await limiter.flush()
    # The old window's unsent hits went in this flush, the new window has its own key.
    assert await stored(redis_client, window_key(key)) == 7
    assert await stored(redis_client, window_key(key, T0 + WINDOW)) == 6
    assert 1 <= await redis_client.ttl(window_key(key)) <= 2  # ended: gone in a second
    assert limiter.unsent_keys == 0


async def test_redis_unreachable_enforces_locally_without_raising(
    unreachable: aioredis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0 + 1)
    limiter = BufferedRateLimiter(unreachable, clock=clock)
    key = f"{prefix}:down"
    with caplog.at_level(logging.WARNING, logger="workpulse.ratelimit"):
        assert await spend(limiter, key, 7, 5) == 5
        assert await limiter.flush() is False
        assert await spend(limiter, key, 3, 5) == 0
        assert await limiter.flush() is False
        assert await limiter.flush() is False
        async with limiter:  # the task and close() do not raise either
            assert await spend(limiter, key, 1, 5) == 0
    warnings = [r for r in caplog.records if r.name == "workpulse.ratelimit" and r.levelno == logging.WARNING]
    assert len(warnings) == 1  # rate-limited: not once per failed flush
    assert "enforcing locally" in warnings[0].getMessage()
    assert limiter.unsent_keys == 1
    assert await spend(limiter, f"{prefix}:other", 5, 5) == 5  # other keys unaffected


async def test_counts_survive_a_failed_flush_exactly_once(
    server_urls: tuple[str, str], redis_client: aioredis.Redis, prefix: str
) -> None:
    target = urlsplit(server_urls[1])
    proxy = Proxy((target.hostname or "127.0.0.1", target.port or 6379))
    await proxy.up()
    client = create_client(target._replace(netloc=f"127.0.0.1:{proxy.port}").geturl())
    clock = Clock(T0 + 1)
    limiter = BufferedRateLimiter(client, clock=clock)
    key = f"{prefix}:flaky"
    try:
        assert await spend(limiter, key, 10, 20) == 10
        assert await limiter.flush() is True
        assert await stored(redis_client, window_key(key)) == 10

        await proxy.down()
        assert await spend(limiter, key, 7, 20) == 7
        assert await limiter.flush() is False
        assert await limiter.flush() is False
        assert await spend(limiter, key, 5, 20) == 3  # enforced locally: 10 + 7 + 3 = 20
        assert await stored(redis_client, window_key(key)) == 10

        await proxy.up()
        assert await limiter.flush() is True
        assert await stored(redis_client, window_key(key)) == 22  # every attempt, once
        assert await limiter.flush() is True
        assert await stored(redis_client, window_key(key)) == 22
        assert await spend(limiter, key, 1, 20) == 0
    finally:
        await client.aclose()
        with contextlib.suppress(AssertionError):
            await proxy.down()


async def test_memory_is_bounded(redis_client: aioredis.Redis, unreachable: aioredis.Redis, prefix: str) -> None:
    clock = Clock(T0 + 1)
    limiter = BufferedRateLimiter(redis_client, clock=clock, max_keys=10)
    # At most max_keys tracked, least recently hit evicted; the evicted hits still flushed.
    for i in range(25):
        await limiter.hit(f"{prefix}:m{i}", limit=5, window_seconds=WINDOW, what="things")
    assert limiter.tracked_keys == 10
    assert limiter.unsent_keys == 25
    assert await limiter.flush()
    assert limiter.unsent_keys == 0
    values = [await stored(redis_client, window_key(f"{prefix}:m{i}")) for i in range(25)]
    assert values == [1] * 25

    # A key evicted with unsent hits and hit again in the window keeps one count.
    small = BufferedRateLimiter(redis_client, clock=clock, max_keys=2)
    for name in ("a", "b", "c", "a", "a"):
        await small.hit(f"{prefix}:e-{name}", limit=5, window_seconds=WINDOW, what="things")
    assert small.tracked_keys == 2
    assert small.unsent_keys == 3
    assert await small.flush()
    counts = [await stored(redis_client, window_key(f"{prefix}:e-{n}")) for n in "abc"]
    assert counts == [3, 1, 1]

    # Keys not hit in the current window are forgotten.
    clock.now = T0 + WINDOW + 1
    await limiter.hit(f"{prefix}:m0", limit=5, window_seconds=WINDOW, what="things")
    assert await limiter.flush()
    assert limiter.tracked_keys == 1
    clock.now = T0 + 2 * WINDOW + 1
    assert await limiter.flush()
    assert limiter.tracked_keys == 0

    # While Redis is down the unsent counts are bounded too (the oldest are given up).
    down = BufferedRateLimiter(unreachable, clock=clock, max_keys=10)
    for i in range(25):
        await down.hit(f"{prefix}:d{i}", limit=5, window_seconds=WINDOW, what="things")
    assert await down.flush() is False
    assert down.unsent_keys == 10
    assert down.dropped_hits == 15

    # A window that ended while Redis was down is given up, not retried forever.
    clock.now = T0 + 3 * WINDOW + 1
    assert await down.flush() is False
    assert down.unsent_keys == 0
    assert down.tracked_keys == 0
    assert down.dropped_hits == 25


async def test_close_flushes_what_is_left(redis_client: aioredis.Redis, prefix: str) -> None:
    clock = Clock(T0 + 1)
    limiter = BufferedRateLimiter(redis_client, flush_seconds=30, clock=clock)
    tasks = [asyncio.create_task(limiter.run(), name="ratelimit-flush")]
    key = f"{prefix}:close"
    assert await spend(limiter, key, 3, 100) == 3
    for task in tasks:  # the runtime.stop_tasks pattern
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert await stored(redis_client, window_key(key)) is None
    await limiter.close()
    assert await stored(redis_client, window_key(key)) == 3
