"""Presence in Redis: per-connection leases, a reconnect grace, exactly-once transitions.

A user is online while at least one of their connections holds a lease. Each lease is a
member ``<user>|<connection>`` of its organization's sorted set scored by its expiry; its
holder renews it (heartbeat) and releases it when the connection ends. A lease is thus
named by (organization, user, connection id), here and in each replica's memory: clients
choose connection ids, so another tenant or user presenting the same id holds a lease of
its own and can neither renew nor end this one. A released user's last lease puts
them in a pending set for the grace period; a reconnect within it cancels the pending
offline, so there is no flap. Leases of a crashed replica are never renewed and the sweep
expires them. Every transition runs in one Lua script that also appends USER_ONLINE or
USER_OFFLINE to the events stream, so each transition is published exactly once whatever
the number of replicas; the presence keys share the stream's hash slot for that reason.
What online users are doing is folded by services/realtime/activity.py, and whether their
agent is silent by services/realtime/silence.py, under the same keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis

from services.realtime.domain import (
    DEFAULT_AGENT_SILENCE_SECONDS,
    ActivityState,
    iso_of_ms,
    presence_payload,
)
from workpulse.redisconn import Keys, events_stream, raise_if_cancelled

logger = logging.getLogger("workpulse.realtime.presence")

# KEYS: leases, counts, online, pending, stream, orgs. ARGV: member, user, org, expiry_ms, maxlen, ts, payload.
_TOUCH = """
if redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('SADD', KEYS[6], ARGV[3])
end
redis.call('ZREM', KEYS[4], ARGV[2])
if redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[6]) == 1 then
  return redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'type', 'USER_ONLINE', 'org', ARGV[3],
    'service', 'realtime', 'ts', ARGV[6], 'data', ARGV[7])
end
return false
"""

# KEYS: leases, counts, pending. ARGV: member, user, offline_deadline_ms.
_RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 and redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
end
return 1
"""

# KEYS: leases, counts, online, pending, stream. ARGV: now_ms, org, maxlen, ts.
_SWEEP = """
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  redis.call('ZREM', KEYS[1], member)
  local user = string.sub(member, 1, string.find(member, '|', 1, true) - 1)
  if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
    redis.call('HDEL', KEYS[2], user)
    redis.call('ZADD', KEYS[4], ARGV[1], user)
  end
end
local published = {}
for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])) do
  redis.call('ZREM', KEYS[4], user)
  if redis.call('HEXISTS', KEYS[2], user) == 0 and redis.call('HDEL', KEYS[3], user) == 1 then
    local data = cjson.encode({userId = user, organizationId = ARGV[2], timestamp = ARGV[4]})
    table.insert(published, redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*', 'type', 'USER_OFFLINE',
      'org', ARGV[2], 'service', 'realtime', 'ts', ARGV[4], 'data', data))
  end
end
return published
"""


def presence_key(keys: Keys, org: str, part: str) -> str:
    """One organization's presence key; every one carries the events stream's hash tag."""
    return keys.key("{events}", "presence", org, part)


def agent_orgs_key(keys: Keys) -> str:
    """The organizations whose open sessions the agent-silence sweep visits."""
    return keys.key("{events}", "presence", "agent-orgs")


def allowances_key(keys: Keys) -> str:
    """Each organization's agent silence allowance, as its latest AGENT_POLICY_UPDATED set it."""
    return keys.key("{events}", "presence", "agent-silence")


def allowance_seconds(stored: str | None, default: int) -> int:
    """The allowance an entry of :func:`allowances_key` says (the default when it leaves it unset)."""
    seconds = json.loads(stored).get("seconds") if stored else None
    return seconds if isinstance(seconds, int) else default


@dataclass(frozen=True, slots=True)
class UserPresence:
    user_id: str
    organization_id: str
    online_since: str
    connections: int
    activity: ActivityState
    agent_silent: bool = False
    agent_silence_seconds: int = DEFAULT_AGENT_SILENCE_SECONDS


class PresenceStore:
    """The Redis side: leases, transitions and activity, all keyed under the events slot."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        *,
        maxlen: int,
        default_agent_silence_seconds: int = DEFAULT_AGENT_SILENCE_SECONDS,
    ) -> None:
        self._client = client
        self._keys = keys
        self._stream = events_stream(keys)
        self._maxlen = maxlen
        self._default_allowance = default_agent_silence_seconds
        self._touch = client.register_script(_TOUCH)
        self._release = client.register_script(_RELEASE)
        self._sweep = client.register_script(_SWEEP)

    def _key(self, org: str, part: str) -> str:
        return presence_key(self._keys, org, part)

    @property
    def _orgs(self) -> str:
        return self._keys.key("{events}", "presence", "orgs")

    async def touch(self, org: str, user: str, connection: str, lease_ms: int) -> str | None:
        """Creates or renews a lease; returns the USER_ONLINE event id when the user came online."""
        now = int(time.time() * 1000)
        args = self._touch_args(org, user, connection, now, lease_ms, iso_of_ms(now))
        published = await self._touch(keys=self._touch_keys(org), args=args)
        return str(published) if published else None

    def _touch_keys(self, org: str) -> list[str]:
        return [self._key(org, p) for p in ("leases", "counts", "online", "pending")] + [self._stream, self._orgs]

    def _touch_args(self, org: str, user: str, connection: str, now: int, lease_ms: int, ts: str) -> list[str | int]:
        return [f"{user}|{connection}", user, org, now + lease_ms, self._maxlen, ts, presence_payload(user, org, ts)]

    async def touch_many(self, leases: Sequence[tuple[str, str, str]], lease_ms: int, chunk: int = 200) -> None:
        """Renews many leases (org, user, connection) in pipelined round trips."""
        for start in range(0, len(leases), chunk):
            now = int(time.time() * 1000)
            ts = iso_of_ms(now)
            async with self._client.pipeline(transaction=False) as pipe:
                for org, user, connection in leases[start : start + chunk]:
                    await self._touch(
                        keys=self._touch_keys(org),
                        args=self._touch_args(org, user, connection, now, lease_ms, ts),
                        client=pipe,
                    )
                await pipe.execute()

    async def release(self, org: str, user: str, connection: str, grace_ms: int) -> None:
        deadline = int(time.time() * 1000) + grace_ms
        keys = [self._key(org, p) for p in ("leases", "counts", "pending")]
        await self._release(keys=keys, args=[f"{user}|{connection}", user, deadline])

    async def sweep(self) -> list[str]:
        """Expires lapsed leases and publishes due offlines in every organization; returns event ids."""
        now = int(time.time() * 1000)
        ts = iso_of_ms(now)
        published: list[str] = []
        for org in sorted(cast(set[str], await self._client.smembers(self._orgs))):
            keys = [self._key(org, p) for p in ("leases", "counts", "online", "pending")] + [self._stream]
            published += [str(i) for i in await self._sweep(keys=keys, args=[now, org, self._maxlen, ts])]
        return published

    async def online(self, org: str, only: Sequence[str] | None = None) -> list[UserPresence]:
        """Who of ``org`` is online (of ``only`` when given: just those are read, never
        the whole organization), with connections, activity and whether their open
        session's agent is silent."""
        online_key = self._key(org, "online")
        if only is None:
            since = cast(dict[str, str], await self._client.hgetall(online_key))
        elif only:
            wanted = sorted(set(only))
            found = cast(list[str | None], await self._client.hmget(online_key, wanted))
            since = {u: at for u, at in zip(wanted, found, strict=True) if at}
        else:
            return []
        users = sorted(since)
        if not users:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for part in ("counts", "activity", "silent"):
                pipe.hmget(self._key(org, part), users)
            pipe.hget(allowances_key(self._keys), org)
            counts, states, silences, stored = await pipe.execute()
        allowance = allowance_seconds(stored, self._default_allowance)
        found_presence = []
        for u, c, s, silence in zip(users, counts, states, silences, strict=True):
            activity = ActivityState.from_json(s)
            # A silence of an older session says nothing of the one open now.
            silent = bool(silence) and json.loads(silence).get("sessionId") == activity.session_id
            found_presence.append(UserPresence(u, org, since[u], int(c or 0), activity, silent, allowance))
        return found_presence


class PresenceTracker:
    """This replica's live connections: renews their leases and sweeps everyone's."""

    def __init__(
        self,
        store: PresenceStore,
        *,
        lease_seconds: float,
        heartbeat_seconds: float,
        grace_seconds: float,
        sweep_seconds: float,
        also_sweep: Sequence[tuple[str, Callable[[], Awaitable[object]]]] = (),
    ) -> None:
        self.store = store
        # Further sweeps on the same interval, each named for its log line (agent silence).
        self._also_sweep = list(also_sweep)
        self.lease_ms = int(lease_seconds * 1000)
        self.grace_ms = int(grace_seconds * 1000)
        self.heartbeat_seconds = heartbeat_seconds
        self._sweep_seconds = sweep_seconds
        # (organization, user, connection id) -> streams of this replica holding that lease.
        # Counted, because one lease may have two streams here for a moment: a gateway
        # re-subscribing with the same id before the old stream's end has been processed.
        self._local: dict[tuple[str, str, str], int] = {}

    async def join(self, org: str, user: str, connection: str) -> None:
        lease = (org, user, connection)
        self._local[lease] = self._local.get(lease, 0) + 1
        await self.store.touch(org, user, connection, self.lease_ms)

    async def leave(self, org: str, user: str, connection: str) -> None:
        """Ends one stream's hold; the lease is released when no stream here holds it."""
        lease = (org, user, connection)
        held = self._local.get(lease, 0)
        if held > 1:
            self._local[lease] = held - 1
        elif held == 1:
            del self._local[lease]
            await self.store.release(org, user, connection, self.grace_ms)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._every(self.heartbeat_seconds, self._renew, "renewing leases"))
            group.create_task(self._every(self._sweep_seconds, self.store.sweep, "sweeping presence"))
            for what, sweep in self._also_sweep:
                group.create_task(self._every(self._sweep_seconds, sweep, what))

    async def _renew(self) -> None:
        await self.store.touch_many(list(self._local), self.lease_ms)

    @staticmethod
    async def _every(seconds: float, work: Callable[[], Awaitable[object]], what: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await asyncio.wait_for(work(), timeout=max(seconds * 4, 5.0))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("%s failed", what, exc_info=True)
            raise_if_cancelled()
