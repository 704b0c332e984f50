"""The per-process policy cache, with a fake reader and clock: what it keeps, for how long,
and that concurrent misses of one organization share one read."""

from __future__ import annotations

import asyncio

from services.ingest.agent_policy import AgentPolicy, OrganizationPolicy
from services.ingest.policy_cache import AgentPolicyCache


class FakeStore:
    def __init__(self) -> None:
        self.stored = OrganizationPolicy()
        self.reads: list[tuple[str, int | None]] = []
        self.gate: asyncio.Event | None = None

    async def read(self, organization_id: str, known: OrganizationPolicy | None) -> OrganizationPolicy:
        self.reads.append((organization_id, known.version if known else None))
        if self.gate is not None:
            await self.gate.wait()
        return self.stored


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_policy_is_read_once_per_ttl_and_the_known_version_is_offered() -> None:
    store, clock = FakeStore(), Clock()
    cache = AgentPolicyCache(store.read, ttl_seconds=3, clock=clock)
    store.stored = OrganizationPolicy(2, AgentPolicy(collect_titles=False))
    for _ in range(5):
        assert (await cache.collection("org", "user")).policy_version == 2
    assert store.reads == [("org", None)]
    store.stored = OrganizationPolicy(3)
    clock.now += 2.9
    assert (await cache.collection("org", "user")).policy_version == 2  # within the TTL: the copy
    clock.now += 0.2
    found = await cache.collection("org", "user")
    assert (found.policy_version, found.titles, found.urls) == (3, True, True)
    assert store.reads == [("org", None), ("org", 2)]  # the re-read says which version it holds


async def test_concurrent_misses_share_one_read() -> None:
    store = FakeStore()
    store.gate = asyncio.Event()
    cache = AgentPolicyCache(store.read, ttl_seconds=3)
    waiting = [asyncio.create_task(cache.policy("org")) for _ in range(20)]
    await asyncio.sleep(0)
    store.gate.set()
    assert {p.version for p in await asyncio.gather(*waiting)} == {0}
    assert len(store.reads) == 1


async def test_a_stored_change_is_known_at_once_and_an_older_read_never_replaces_it() -> None:
    store, clock = FakeStore(), Clock()
    cache = AgentPolicyCache(store.read, ttl_seconds=3, clock=clock)
    assert cache.known_version("org") == 0
    await cache.policy("org")
    cache.remember("org", OrganizationPolicy(5))
    assert cache.known_version("org") == 5
    assert (await cache.policy("org")).version == 5
    cache.remember("org", OrganizationPolicy(4))  # a read that began before the change
    assert cache.known_version("org") == 5


async def test_the_number_of_organizations_held_is_bounded() -> None:
    store, clock = FakeStore(), Clock()
    store.stored = OrganizationPolicy(1)
    cache = AgentPolicyCache(store.read, ttl_seconds=3, max_organizations=10, clock=clock)
    for n in range(10):
        await cache.policy(f"org-{n}")
    clock.now += 5  # all expired: the next organization pushes them out
    await cache.policy("one-more")
    assert [cache.known_version(f"org-{n}") for n in range(10)] == [0] * 10
    assert cache.known_version("one-more") == 1
    for n in range(30):
        await cache.policy(f"fresh-{n}")
    assert sum(cache.known_version(f"fresh-{n}") for n in range(30)) <= 10
