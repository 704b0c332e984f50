"""Each organization's agent policy, remembered by this process for a few seconds.

Every acknowledgement of an agent's stream carries its organization's policy version,
and every batch drops the text its sender's policy does not collect: both read the
policy, and a query per batch would be a fifth statement on the hot path. A short TTL
instead of invalidation across replicas is enough here because:

- the agent refetches its policy (GetAgentPolicy, read from the database, not from
  here) when an acknowledgement's version differs from the one it holds, so a stale
  version only delays that refetch by the TTL;
- every replica re-reads within the TTL, so all converge on a change within it; the
  replica that stored the change knows it at once (:meth:`AgentPolicyCache.remember`);
- a policy that stops collecting titles or URLs is applied by the agent itself, on the
  device; the server's drop is the guard for agents that have not refetched yet, and
  lags a change by at most the TTL.

A re-read asks for the document only when the version moved (policy_repository), so an
idle refresh costs one index probe; concurrent misses of one organization share one read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from services.ingest.admission import EventCollection
from services.ingest.agent_policy import OrganizationPolicy

Reader = Callable[[str, OrganizationPolicy | None], Awaitable[OrganizationPolicy]]


class AgentPolicyCache:
    def __init__(
        self,
        read: Reader,
        *,
        ttl_seconds: float,
        max_organizations: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl = ttl_seconds
        self._max = max_organizations
        self._clock = clock
        self._entries: dict[str, tuple[float, OrganizationPolicy]] = {}
        self._reading: dict[str, asyncio.Task[OrganizationPolicy]] = {}

    async def policy(self, organization_id: str) -> OrganizationPolicy:
        """The organization's stored policy, at most the TTL old."""
        entry = self._entries.get(organization_id)
        if entry is not None and self._clock() < entry[0]:
            return entry[1]
        task = self._reading.get(organization_id)
        if task is None:
            task = asyncio.create_task(self._refresh(organization_id, entry[1] if entry else None))
            self._reading[organization_id] = task
            task.add_done_callback(lambda _: self._reading.pop(organization_id, None))
        # Shielded: a caller that gives up (its stream ended) does not cancel the others' read.
        return await asyncio.shield(task)

    async def _refresh(self, organization_id: str, known: OrganizationPolicy | None) -> OrganizationPolicy:
        found = await self._read(organization_id, known)
        self.remember(organization_id, found)
        return found

    def remember(self, organization_id: str, policy: OrganizationPolicy) -> None:
        """Keeps ``policy`` for the TTL (a newer version than the one held, or a re-read)."""
        held = self._entries.get(organization_id)
        if held is not None and held[1].version > policy.version:
            return  # a read that started before this process stored a newer version
        if len(self._entries) >= self._max and organization_id not in self._entries:
            now = self._clock()
            self._entries = {org: e for org, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self._max:
                self._entries.clear()  # every one is fresh: a burst of organizations; start over
        self._entries[organization_id] = (self._clock() + self._ttl, policy)

    async def collection(self, organization_id: str, user_id: str) -> EventCollection:
        """What ``user_id``'s policy lets ingest store and share, with the policy's version."""
        policy = await self.policy(organization_id)
        titles, urls, app = policy.collects(user_id)
        return EventCollection(titles, urls, policy.version, share_current_app=app)

    def known_version(self, organization_id: str) -> int:
        """The version held (however old), 0 when none: for answers that read nothing."""
        entry = self._entries.get(organization_id)
        return entry[1].version if entry is not None else 0
