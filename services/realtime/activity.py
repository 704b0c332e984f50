"""Activity in Redis: what each user does in their session, folded from the events stream.

Every replica folds every session event, ACTIVITY_RECORDED and INACTIVE_ALERT into the
user's :class:`ActivityState`, and one Lua script writes it only when the event is newer
than the one the stored state came from, so replicas agree however their reads interleave.
The same script keeps the index the agent-silence sweep reads (services/realtime/silence.py):
each open session's user in its organization's ``contact`` sorted set, scored by the last
contact; and when the new state answers a silence (activity arrived after the contact the
silence was measured from, or the session stopped), it ends it and appends
USER_AGENT_RESUMED, which therefore is published once however many replicas fold the event.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import cast

import redis.asyncio as aioredis

from services.realtime.domain import (
    ACTIVITY_RECORDED,
    INACTIVE_ALERT,
    SESSION_EVENTS,
    ActivityState,
    Event,
    iso_of_ms,
    next_activity,
    parse_stream_id,
)
from services.realtime.presence import agent_orgs_key, presence_key
from workpulse.redisconn import Keys, events_stream

ACTIVITY_CACHE_SIZE = 100_000
FOLDED = (*SESSION_EVENTS, ACTIVITY_RECORDED, INACTIVE_ALERT)

# KEYS: activity, contact, silent, stream, agent orgs. ARGV: user, event id ms, event id seq,
# state json, org, maxlen, ts. Returns the USER_AGENT_RESUMED id when it ended a silence.
_ACTIVITY = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local seen = cjson.decode(current)
  local ms, seq = tonumber(seen['eventMs']), tonumber(seen['eventSeq'])
  if ms > tonumber(ARGV[2]) or (ms == tonumber(ARGV[2]) and seq >= tonumber(ARGV[3])) then return false end
end
local state = cjson.decode(ARGV[4])
state['eventMs'] = ARGV[2]
state['eventSeq'] = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(state))
local session, contact = state['sessionId'], state['contactMs']
local open = type(session) == 'string' and type(contact) == 'number'
local published = false
local silent = redis.call('HGET', KEYS[3], ARGV[1])
if silent then
  local was = cjson.decode(silent)
  local reason = false
  if not open or was['sessionId'] ~= session then
    reason = 'session_stopped'
  elseif contact > tonumber(was['contactMs']) then
    reason = 'activity'
  end
  -- Contact at or before the one the silence was measured from is old news (a replica
  -- folding late): the agent is still silent.
  if not reason then return false end
  redis.call('HDEL', KEYS[3], ARGV[1])
  local activity, latest = cjson.null, cjson.null
  if reason == 'activity' then
    activity = state['active'] and 'active' or 'idle'
    latest = state['contactAt']
  end
  local data = cjson.encode({userId = ARGV[1], organizationId = ARGV[5], sessionId = was['sessionId'],
    reason = reason, activity = activity, lastAgentContactAt = latest,
    previousAgentContactAt = was['contactAt'], timestamp = ARGV[7]})
  published = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'type', 'USER_AGENT_RESUMED',
    'org', ARGV[5], 'service', 'realtime', 'ts', ARGV[7], 'data', data)
end
if open then
  redis.call('ZADD', KEYS[2], contact, ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[5])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return published
"""


class ActivityStore:
    """Folds the events stream into each user's activity (idempotent, in stream order)."""

    def __init__(self, client: aioredis.Redis, keys: Keys, *, maxlen: int) -> None:
        self._client = client
        self._keys = keys
        self._stream = events_stream(keys)
        self._maxlen = maxlen
        self._activity = client.register_script(_ACTIVITY)
        self._states: OrderedDict[tuple[str, str], ActivityState] = OrderedDict()

    def _remember(self, pair: tuple[str, str], state: ActivityState) -> None:
        self._states[pair] = state
        self._states.move_to_end(pair)
        if len(self._states) > ACTIVITY_CACHE_SIZE:
            self._states.popitem(last=False)

    def _script_keys(self, org: str) -> list[str]:
        parts = [presence_key(self._keys, org, p) for p in ("activity", "contact", "silent")]
        return [*parts, self._stream, agent_orgs_key(self._keys)]

    async def observe(self, events: Sequence[Event]) -> list[str]:
        """Folds session, activity and alert events; returns the USER_AGENT_RESUMED ids published."""
        relevant = [e for e in events if e.type in FOLDED and e.user_id]
        if not relevant:
            return []
        # This replica reads every event in order, so its cache stays exact once loaded.
        pairs = sorted({(e.organization_id, e.user_id) for e in relevant if e.user_id})
        missing = [pair for pair in pairs if pair not in self._states]
        if missing:
            async with self._client.pipeline(transaction=False) as pipe:
                for org, user in missing:
                    pipe.hget(presence_key(self._keys, org, "activity"), user)
                raw = cast(list[str | None], await pipe.execute())
            for pair, found in zip(missing, raw, strict=True):
                self._remember(pair, ActivityState.from_json(found))
        states = {pair: self._states[pair] for pair in pairs}
        latest: dict[tuple[str, str], tuple[Event, ActivityState]] = {}
        for event in relevant:
            pair = (event.organization_id, event.user_id or "")
            changed = next_activity(states[pair], event)
            if changed is not None:
                states[pair] = changed
                latest[pair] = (event, changed)
                self._remember(pair, changed)
        ts = iso_of_ms(int(time.time() * 1000))
        async with self._client.pipeline(transaction=False) as pipe:
            for (org, user), (event, state) in latest.items():
                ms, seq = parse_stream_id(event.id)
                args: list[str | int] = [user, ms, seq, state.to_json(), org, self._maxlen, ts]
                await self._activity(keys=self._script_keys(org), args=args, client=pipe)
            replies = await pipe.execute()
        return [str(r) for r in replies if r]
