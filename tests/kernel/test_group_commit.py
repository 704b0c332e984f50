"""The kernel's group commit: a lone submission commits at once; under contention one key's
submissions share a commit, keys take turns, slots bound commits (not completions), and
every caller gets its own answer or the failure that hit its commit."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import eventually
from workpulse.group_commit import GroupCommit


class Store:
    """Commits what it is given once ``release`` is set (per call), records every commit."""

    def __init__(self, *, hold: bool = False) -> None:
        self.commits: list[tuple[str, list[int]]] = []
        self.gates: list[asyncio.Event] = []
        self.hold = hold
        self.fail_on: set[int] = set()
        self.completing = 0
        self.complete_gate = asyncio.Event()
        self.complete_gate.set()

    async def commit(self, key: str, items: list[int]) -> list[int]:
        self.commits.append((key, list(items)))
        gate = asyncio.Event()
        self.gates.append(gate)
        if not self.hold:
            gate.set()
        await gate.wait()
        if self.fail_on & set(items):
            raise RuntimeError("commit refused")
        return [n * 10 for n in items]

    async def complete(self, key: str, items: list[int], committed: list[int]) -> list[int | BaseException]:
        self.completing += 1
        try:
            await self.complete_gate.wait()
        finally:
            self.completing -= 1
        return [ValueError(f"odd {n}") if n % 2 else c for n, c in zip(items, committed, strict=True)]


async def _ready(value: bool) -> bool:
    return value


def _group(store: Store, **options: int) -> GroupCommit[str, int, list[int], int]:
    return GroupCommit(store.commit, store.complete, **options)  # type: ignore[arg-type]


async def test_a_lone_submission_commits_at_once_alone() -> None:
    store = Store()
    group = _group(store)
    assert await group.submit("org-a", 2) == 20
    assert await group.submit("org-a", 4) == 40
    assert store.commits == [("org-a", [2]), ("org-a", [4])]


async def test_under_contention_one_keys_submissions_share_a_commit_and_each_gets_its_own_answer() -> None:
    store = Store(hold=True)
    group = _group(store, max_concurrent=1)
    first = asyncio.ensure_future(group.submit("org-a", 2))
    await eventually(lambda: _ready(len(store.commits) == 1))
    queued = [asyncio.ensure_future(group.submit("org-a", n)) for n in (4, 6, 7)]
    await asyncio.sleep(0)
    store.gates[0].set()
    await eventually(lambda: _ready(len(store.commits) == 2))
    store.gates[1].set()
    assert await first == 20
    assert await queued[0] == 40
    assert await queued[1] == 60
    with pytest.raises(ValueError, match="odd 7"):
        await queued[2]
    assert store.commits == [("org-a", [2]), ("org-a", [4, 6, 7])]


async def test_keys_take_turns_the_longest_waiting_first_and_size_bounds_a_commit() -> None:
    store = Store(hold=True)
    group = GroupCommit(store.commit, store.complete, size=lambda n: n, max_size=10, max_concurrent=1)  # type: ignore[arg-type]
    blocker = asyncio.ensure_future(group.submit("org-z", 2))
    await eventually(lambda: _ready(len(store.commits) == 1))
    waiting = [
        asyncio.ensure_future(group.submit(key, n))
        for key, n in (("org-a", 4), ("org-b", 2), ("org-a", 6), ("org-a", 8), ("org-b", 12))
    ]
    await asyncio.sleep(0)
    for n in range(1, 5):
        store.gates[n - 1].set()
        await eventually(lambda: _ready(len(store.commits) == n + 1))  # noqa: B023 - awaited within the iteration
    store.gates[4].set()
    await asyncio.gather(blocker, *waiting, return_exceptions=True)
    # org-a waited longest: 4 + 6 fit in 10, 8 waits; org-b then (2 alone: 12 does not fit);
    # org-a again; a submission larger than max_size still goes, alone.
    assert store.commits == [
        ("org-z", [2]),
        ("org-a", [4, 6]),
        ("org-b", [2]),
        ("org-a", [8]),
        ("org-b", [12]),
    ]


async def test_slots_bound_commits_and_are_released_before_completion() -> None:
    store = Store(hold=True)
    store.complete_gate.clear()
    group = _group(store, max_concurrent=2)
    calls = [asyncio.ensure_future(group.submit(f"org-{n}", 2 * n)) for n in range(4)]
    await eventually(lambda: _ready(len(store.commits) == 2))
    await asyncio.sleep(0.01)
    assert len(store.commits) == 2 and group.running == 2
    store.gates[0].set()
    store.gates[1].set()
    # Both commits are completing (waiting on the gate) and no longer hold slots: the
    # next two commit meanwhile.
    await eventually(lambda: _ready(len(store.commits) == 4 and store.completing == 2))
    store.gates[2].set()
    store.gates[3].set()
    store.complete_gate.set()
    assert await asyncio.gather(*calls) == [0, 20, 40, 60]
    assert group.running == 0


async def test_a_failed_commit_fails_each_of_its_callers_and_the_next_commit_runs() -> None:
    store = Store()
    store.fail_on = {4}
    group = _group(store, max_concurrent=1)
    store.hold = True
    blocker = asyncio.ensure_future(group.submit("org-a", 2))
    await eventually(lambda: _ready(len(store.commits) == 1))
    doomed = [asyncio.ensure_future(group.submit("org-a", n)) for n in (4, 6)]
    later = asyncio.ensure_future(group.submit("org-b", 8))
    await asyncio.sleep(0)
    store.hold = False
    store.gates[0].set()
    assert await blocker == 20
    for call in doomed:
        with pytest.raises(RuntimeError, match="commit refused"):
            await call
    assert await later == 80
    assert group.running == 0


async def test_close_waits_for_flushes_in_progress() -> None:
    store = Store(hold=True)
    group = _group(store)
    call = asyncio.ensure_future(group.submit("org-a", 2))
    await eventually(lambda: _ready(len(store.commits) == 1))
    closing = asyncio.ensure_future(group.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    store.gates[0].set()
    await closing
    assert call.done() and call.result() == 20
