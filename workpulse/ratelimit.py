"""Fixed-window rate limits kept in Redis, so every replica shares the counters.

Two limiters with the same ``hit`` contract (:class:`Limiter`):

:class:`RateLimiter` — exact. One Redis round trip per hit (INCR + EXPIRE in a script);
the window starts at a key's first hit. For limits that guard something: log-in
attempts, registrations.

:class:`BufferedRateLimiter` — shared but approximate, no Redis call on the request path.
For generous per-user budgets on hot paths (ingest activity, session reads/writes).
Each replica counts hits in memory per (key, window); one background task sends every
key's unsent count to Redis each ``flush_seconds`` (0.2 s) — one pipelined round trip,
one script call per tenant (INCRBY + EXPIRE per key, returning the new totals; a
tenant's keys share a ``{org}`` hash tag, so a call never spans Redis Cluster slots) —
and learns each key's global count from the reply. A key whose unsent count reaches
``eager_fraction`` (10 %) of its limit wakes the flush at once, so a burst is seen
quickly. A hit is refused when *last known global count + this replica's unconfirmed
hits* exceeds the limit; refused hits are counted too, as :class:`RateLimiter` counts
every attempt.

Windows are fixed and aligned to the epoch (``floor(now / window_seconds)``, the index is
part of the Redis key, ``<key>:<window_seconds>s:<index>``), so every replica agrees on
the boundaries without asking Redis; a key expires at the end of its window (+1 s), at
most ``window_seconds + 1`` after it was created. When a window ends its local state is
dropped; keys not hit in the current window are forgotten and at most ``max_keys``
(100k) keys are tracked, least recently hit evicted first (their unsent counts are
still flushed).

Over-admission bound
    A replica's own hits are always in its view, so a key served by one replica is
    exact. What a replica cannot see are hits it has not learned yet: the other
    replicas' unflushed hits and whatever reached Redis since its own last flush. Once
    the global count has reached the limit, every replica has sent its earlier hits
    within one flush interval, and a replica that goes on admitting flushes within one
    more and from then on refuses. So beyond the limit a window admits at most what the
    replicas admit of that key in about two flush intervals:

        overshoot <= replicas x per-replica rate of the key x (2 x flush_seconds + Redis RTT)

    (the sum is really that user's total rate, however it is spread). A user at the
    ingest budget itself (6000/min = 100/s) overshoots by about 40 requests (< 1 %); a
    flood is cut off within ~0.4 s and everything after that in the window is refused;
    the eager flush shortens this for bursts against smaller limits. That is acceptable
    for a capacity budget a well-behaved client never meets. It is *not* acceptable for
    auth: a log-in limit is a handful of attempts against an attacker who chooses the
    rate — at 1000 guesses/s the overshoot (~400) would dwarf a limit of 10 — so auth
    keeps the exact :class:`RateLimiter`.

Redis unavailable
    A flush that fails (or takes longer than ``timeout_seconds``) keeps its counts and
    retries them at the next flush; hits go on being counted and enforced locally, so
    each replica enforces the full limit on its own (at most ``replicas x limit`` per
    window during an outage). Nothing raises to the caller; a warning is logged at most
    every ``warn_every_seconds``. Counts of a window that ended before Redis came back
    are dropped (that window no longer limits anything). A flush whose reply is lost
    after Redis applied it (a timeout) is retried and so counted twice: the error is on
    the refusing side.

Lifecycle: run :meth:`BufferedRateLimiter.run` as a background task (or ``start()``, or
``async with``) and ``await close()`` at shutdown (stops the task, flushes once) before
the Redis client is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from workpulse.errors import RateLimited
from workpulse.redisconn import raise_if_cancelled

logger = logging.getLogger("workpulse.ratelimit")

# INCR and set the expiry in one round trip; returns the count and the remaining TTL.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('TTL', KEYS[1])}
"""

# Adds a replica's unsent hits to each window's key (ARGV: count, expiry per key); a key
# expires at the end of its window (set once, when it has no TTL yet). Returns the new totals.
_ADD = """
local totals = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCRBY', key, ARGV[2 * i - 1])
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[2 * i]) end
  totals[i] = n
end
return totals
"""

# Keys per script call: bounds how long one call holds Redis (~1 ms).
_KEYS_PER_CALL = 500


def _hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (``{org}`` in tenant keys, else the key)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


class Limiter(Protocol):
    """What a budget needs: :class:`RateLimiter` and :class:`BufferedRateLimiter` both fit."""

    async def hit(self, key: str, *, limit: int, window_seconds: int, what: str) -> None: ...


class RateLimiter:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._hit = client.register_script(_HIT)

    async def hit(self, key: str, *, limit: int, window_seconds: int, what: str) -> None:
        """Counts one attempt; raises :class:`RateLimited` past ``limit`` per window."""
        count, ttl = await self._hit(keys=[key], args=[window_seconds])
        if int(count) > limit:
            raise RateLimited(f"too many {what}; retry later", retry_after=int(ttl) if int(ttl) > 0 else 1)

    async def reset(self, key: str) -> None:
        await self._client.delete(key)


@dataclass(eq=False)
class _Window:
    """One key's counts in one window, as this replica knows them."""

    redis_key: str
    index: int
    ends_at: float
    known: int = 0  # the global total Redis last returned (includes our flushed hits)
    sending: int = 0  # our hits in the flush under way
    unsent: int = 0  # our hits not sent yet

    def estimate(self) -> int:
        return self.known + self.sending + self.unsent


class BufferedRateLimiter:
    """Fixed-window limits counted locally and reconciled with Redis in the background.

    A drop-in for :class:`RateLimiter` where an overshoot bounded by the key's traffic
    in ~2 flush intervals is acceptable (see the module docstring); never for
    limits that guard credentials.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        flush_seconds: float = 0.2,
        eager_fraction: float = 0.1,
        max_keys: int = 100_000,
        timeout_seconds: float = 2.0,
        warn_every_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if flush_seconds <= 0 or timeout_seconds <= 0:
            raise ValueError("flush_seconds and timeout_seconds must be positive")
        if not 0 < eager_fraction <= 1:
            raise ValueError("eager_fraction must be in (0, 1]")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._client = client
        self._flush_seconds = flush_seconds
        self._eager_fraction = eager_fraction
        self._max_keys = max_keys
        self._timeout = timeout_seconds
        self._warn_every = warn_every_seconds
        self._clock = clock
        self._sha = client.register_script(_ADD).sha
        # (key, window_seconds) -> its current window, least recently hit first.
        self._windows: OrderedDict[tuple[str, int], _Window] = OrderedDict()
        # redis key -> window with unsent hits (also windows already ended or evicted).
        self._dirty: dict[str, _Window] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0  # failed flushes since the last warning
        self._failing = False
        self._last_warning = -math.inf
        self.dropped_hits = 0  # counts given up on (window ended or too many keys while Redis was down)

    @property
    def tracked_keys(self) -> int:
        """Keys with a window tracked for enforcement."""
        return len(self._windows)

    @property
    def unsent_keys(self) -> int:
        """Windows holding hits not yet in Redis."""
        return len(self._dirty)

    async def hit(self, key: str, *, limit: int, window_seconds: int, what: str) -> None:
        """Counts one attempt; raises :class:`RateLimited` past ``limit`` per window.

        Never waits for Redis (and never raises for it)."""
        now = self._clock()
        index = int(now // window_seconds)
        slot = (key, window_seconds)
        window = self._windows.get(slot)
        if window is None or window.index != index:
            redis_key = f"{key}:{window_seconds}s:{index}"
            # An evicted window whose hits are not sent yet is taken back, not counted twice.
            window = self._dirty.get(redis_key)
            if window is None:
                window = _Window(redis_key, index, (index + 1) * window_seconds)
            self._windows[slot] = window
            if len(self._windows) > self._max_keys:
                # Its unsent hits stay in _dirty and are still flushed.
                self._windows.popitem(last=False)
        self._windows.move_to_end(slot)
        window.unsent += 1
        self._dirty[window.redis_key] = window
        if window.estimate() > limit:
            raise RateLimited(f"too many {what}; retry later", retry_after=math.ceil(window.ends_at - now))
        if window.unsent >= max(1, int(limit * self._eager_fraction)):
            self._wake.set()

    async def flush(self) -> bool:
        """Sends every unsent count in one round trip and learns the keys' global counts.

        Returns False when Redis could not be reached (the counts are kept for the next
        flush); never raises for a Redis failure."""
        async with self._lock:
            now = self._clock()
            self._forget_ended(now)
            batch = list(self._dirty.values())
            self._dirty = {}
            if not batch:
                return True
            for window in batch:
                window.sending, window.unsent = window.unsent, 0
            try:
                async with asyncio.timeout(self._timeout):
                    totals = await self._send(batch, now)
            except (RedisError, OSError, TimeoutError) as exc:
                self._requeue(batch, self._clock())
                self._note_failure(exc)
                return False
            except BaseException:
                self._requeue(batch, self._clock())
                raise
            failed: list[_Window] = []
            error: Exception | None = None
            for window, total in zip(batch, totals, strict=True):
                if isinstance(total, Exception):
                    failed.append(window)
                    error = total
                else:
                    window.known, window.sending = total, 0
            if error is not None:
                self._requeue(failed, self._clock())
                self._note_failure(error)
                return False
            if self._failing:
                logger.info("rate-limit counters reconciled with Redis again")
                self._failing = False
                self._failures = 0
                self._last_warning = -math.inf
            return True

    async def run(self) -> None:
        """Flushes every ``flush_seconds``, or at once when a key nears its limit; runs
        until cancelled (a background task, stopped with ``runtime.stop_tasks``)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("rate-limit flush failed", exc_info=True)
            raise_if_cancelled()  # flushing calls Redis, which may swallow a cancellation

    def start(self) -> None:
        """Starts :meth:`run` as this limiter's own task (stopped by :meth:`close`)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="ratelimit-flush")

    async def close(self) -> None:
        """Stops the task started by :meth:`start` (if any) and flushes once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.flush()

    async def __aenter__(self) -> BufferedRateLimiter:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _send(self, batch: list[_Window], now: float) -> list[int | Exception]:
        """One pipeline of script calls, one per hash tag (a tenant's keys share a Redis
        Cluster slot, so each call stays on one node), at most ``_KEYS_PER_CALL`` keys
        each; loads the script once if Redis does not have it. Returns each window's new
        total, or the error of its call."""
        groups: dict[str, list[int]] = {}
        for i, window in enumerate(batch):
            groups.setdefault(_hash_tag(window.redis_key), []).append(i)
        calls = [
            members[start : start + _KEYS_PER_CALL]
            for members in groups.values()
            for start in range(0, len(members), _KEYS_PER_CALL)
        ]
        results: list[int | Exception] = [0] * len(batch)
        for attempt in range(2):
            async with self._client.pipeline(transaction=False) as pipe:
                for call in calls:
                    args: list[int] = []
                    for i in call:
                        args += (batch[i].sending, max(1, math.ceil(batch[i].ends_at - now)) + 1)
                    pipe.evalsha(self._sha, len(call), *(batch[i].redis_key for i in call), *args)
                replies = await pipe.execute(raise_on_error=False)
            missing = []
            for call, reply in zip(calls, replies, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    missing.append(call)
                    continue
                for n, i in enumerate(call):
                    results[i] = reply if isinstance(reply, Exception) else int(reply[n])
            if not missing:
                break
            await self._client.script_load(_ADD)
            calls = missing
        return results

    def _requeue(self, windows: list[_Window], now: float) -> None:
        """Puts the counts of a failed flush back, unless their window has ended."""
        for window in windows:
            window.unsent += window.sending
            window.sending = 0
            if window.ends_at <= now:
                self.dropped_hits += window.unsent
                window.unsent = 0
                self._dirty.pop(window.redis_key, None)
            elif (current := self._dirty.setdefault(window.redis_key, window)) is not window:
                # Evicted during the flush and tracked again since: one window, one count.
                current.unsent += window.unsent
                window.unsent = 0
        # Only while Redis is down can this exceed the bound: give up the oldest.
        while len(self._dirty) > self._max_keys:
            redis_key = next(iter(self._dirty))
            window = self._dirty.pop(redis_key)
            self.dropped_hits += window.unsent
            window.known += window.unsent  # still enforced here, just never sent
            window.unsent = 0

    def _forget_ended(self, now: float) -> None:
        """Drops windows that have ended, least recently hit first (their unsent hits, if
        any, go in this flush)."""
        while self._windows:
            slot = next(iter(self._windows))
            if self._windows[slot].ends_at > now:
                break
            del self._windows[slot]

    def _note_failure(self, exc: BaseException) -> None:
        self._failing = True
        self._failures += 1
        mono = time.monotonic()
        if mono - self._last_warning >= self._warn_every:
            logger.warning(
                "rate-limit counters not reconciled with Redis; enforcing locally and retrying",
                exc_info=exc,
                extra={"fields": {"failed_flushes": self._failures, "unsent_keys": len(self._dirty)}},
            )
            self._last_warning = mono
            self._failures = 0
