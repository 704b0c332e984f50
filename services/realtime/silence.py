"""Agent silence: an open session of which nothing has been received for longer than its
organization's allowance is ``agent_silent``, not idle.

Idle is what the agent reports (idle events, or no active input past the idle threshold
while it keeps sending); silence is the absence of any report, which is also what an agent
that died, hung or lost its network looks like. Contact is the server's receipt of the
session's activity as realtime sees it (:class:`ActivityState.contact_ms`, kept by
services/realtime/activity.py in each organization's ``contact`` sorted set).

Every replica sweeps every organization with open sessions each ``PRESENCE_SWEEP_SECONDS``;
one Lua script per organization moves the users whose last contact is older than the
allowance from ``contact`` to ``silent`` and appends USER_AGENT_SILENT in the same step,
so each silence is published once whatever the number of replicas (the keys carry the
events stream's hash tag). Activity arriving later, or the session's stop, ends it
(USER_AGENT_RESUMED, activity.py).

The allowance is the organization's agent policy ``agentSilenceSeconds``, folded from
ingest's AGENT_POLICY_UPDATED events into one Redis hash (newest policy version wins), so
it survives realtime restarts; an organization whose policy event realtime never saw (set
before the stream's retention horizon while no realtime replica's Redis kept it) gets the
default until its policy next changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import cast

import redis.asyncio as aioredis

from services.realtime.domain import AGENT_POLICY_UPDATED, Event, allowance_of, iso_of_ms
from services.realtime.presence import agent_orgs_key, allowances_key, presence_key
from workpulse.redisconn import Keys, events_stream

# KEYS: contact, silent, activity, allowances, stream. ARGV: now_ms, org, maxlen, ts,
# default allowance seconds, since when this replica has watched the stream (ms).
_SWEEP = """
local allowance = tonumber(ARGV[5])
local stored = redis.call('HGET', KEYS[4], ARGV[2])
if stored then
  local seconds = cjson.decode(stored)['seconds']
  if type(seconds) == 'number' then allowance = seconds end
end
local cutoff = tonumber(ARGV[1]) - allowance * 1000
-- Only a replica that has watched the stream for the whole allowance can tell that
-- nothing arrived in it (after all replicas restarted, the contacts in Redis are stale).
if cutoff < tonumber(ARGV[6]) then return {} end
local published = {}
for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', cutoff))) do
  redis.call('ZREM', KEYS[1], user)
  local raw = redis.call('HGET', KEYS[3], user)
  local state = raw and cjson.decode(raw)
  if state and type(state['sessionId']) == 'string' and type(state['contactMs']) == 'number' then
    redis.call('HSET', KEYS[2], user, cjson.encode({sessionId = state['sessionId'],
      contactMs = state['contactMs'], contactAt = state['contactAt']}))
    local data = cjson.encode({userId = user, organizationId = ARGV[2], sessionId = state['sessionId'],
      activity = 'agent_silent', lastAgentContactAt = state['contactAt'], agentSilenceSeconds = allowance,
      timestamp = ARGV[4]})
    table.insert(published, redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*', 'type', 'USER_AGENT_SILENT',
      'org', ARGV[2], 'service', 'realtime', 'ts', ARGV[4], 'data', data))
  end
end
return published
"""

# KEYS: allowances, silent, contact, activity, stream. ARGV: org, version, seconds ("" for
# the default), now_ms, default allowance seconds, maxlen, ts. A newer policy only; a
# longer allowance ends the silences it no longer covers.
_POLICY = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored and tonumber(cjson.decode(stored)['version']) >= tonumber(ARGV[2]) then return {} end
local seconds = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({version = tonumber(ARGV[2]), seconds = seconds or cjson.null}))
local cutoff = tonumber(ARGV[4]) - (seconds or tonumber(ARGV[5])) * 1000
local silent = redis.call('HGETALL', KEYS[2])
local published = {}
for i = 1, #silent, 2 do
  local user, was = silent[i], cjson.decode(silent[i + 1])
  if tonumber(was['contactMs']) >= cutoff then
    redis.call('HDEL', KEYS[2], user)
    redis.call('ZADD', KEYS[3], was['contactMs'], user)
    local raw = redis.call('HGET', KEYS[4], user)
    local activity = cjson.null
    if raw then activity = cjson.decode(raw)['active'] and 'active' or 'idle' end
    local data = cjson.encode({userId = user, organizationId = ARGV[1], sessionId = was['sessionId'],
      reason = 'allowance_changed', activity = activity, lastAgentContactAt = was['contactAt'],
      previousAgentContactAt = was['contactAt'], timestamp = ARGV[7]})
    table.insert(published, redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*', 'type', 'USER_AGENT_RESUMED',
      'org', ARGV[1], 'service', 'realtime', 'ts', ARGV[7], 'data', data))
  end
end
return published
"""


class AgentSilence:
    """The allowances, and the sweep that publishes each silence once."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        *,
        maxlen: int,
        default_seconds: int,
        watching_since: Callable[[], float | None],
        chunk: int = 200,
    ) -> None:
        self._client = client
        self._keys = keys
        self._stream = events_stream(keys)
        self._maxlen = maxlen
        self.default_seconds = default_seconds
        # When this replica began reading the stream (epoch seconds); None: not yet.
        self._watching_since = watching_since
        self._chunk = chunk
        self._sweep = client.register_script(_SWEEP)
        self._policy = client.register_script(_POLICY)

    async def observe(self, events: Sequence[Event]) -> list[str]:
        """Folds AGENT_POLICY_UPDATED events in order; returns the USER_AGENT_RESUMED ids published."""
        published: list[str] = []
        for event in events:
            if event.type != AGENT_POLICY_UPDATED:
                continue
            allowance = allowance_of(event)
            if allowance is None:
                continue
            org = allowance.organization_id
            now = int(time.time() * 1000)
            keys = [allowances_key(self._keys)] + [presence_key(self._keys, org, p) for p in ("silent", "contact")]
            keys += [presence_key(self._keys, org, "activity"), self._stream]
            seconds = "" if allowance.seconds is None else allowance.seconds
            args: list[str | int] = [
                org,
                allowance.version,
                seconds,
                now,
                self.default_seconds,
                self._maxlen,
                iso_of_ms(now),
            ]
            published += [str(i) for i in await self._policy(keys=keys, args=args)]
        return published

    async def sweep(self) -> list[str]:
        """Marks the open sessions silent for longer than their allowance; returns the event ids."""
        since = self._watching_since()
        if since is None:
            return []
        watching_ms = int(since * 1000)
        orgs = sorted(cast(set[str], await self._client.smembers(agent_orgs_key(self._keys))))
        published: list[str] = []
        for start in range(0, len(orgs), self._chunk):
            now = int(time.time() * 1000)
            ts = iso_of_ms(now)
            async with self._client.pipeline(transaction=False) as pipe:
                for org in orgs[start : start + self._chunk]:
                    keys = [presence_key(self._keys, org, p) for p in ("contact", "silent", "activity")]
                    keys += [allowances_key(self._keys), self._stream]
                    args: list[str | int] = [now, org, self._maxlen, ts, self.default_seconds, watching_ms]
                    await self._sweep(keys=keys, args=args, client=pipe)
                for reply in await pipe.execute():
                    published += [str(i) for i in reply]
        return published
