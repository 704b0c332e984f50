"""The in-line hand-off queue: alone a hand-off leaves at once; those queued in one
event-loop turn (a group commit's) leave in one call; concurrent ones share calls; each
caller gets its own answer, its own NotFound, or the call's failure."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from services.ingest.apply_queue import ApplyQueue
from services.ingest.domain import SessionTotals, TotalsDelta
from services.ingest.repository import PendingHandoff
from tests.support import eventually
from workpulse.errors import NotFound, Unavailable

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _handoff(n: int) -> PendingHandoff:
    return PendingHandoff(n, TotalsDelta("org", f"session-{n}", "user", n, 0, NOW, 1))


def _totals(h: PendingHandoff) -> SessionTotals:
    return SessionTotals(h.delta.session_id, h.delta.active_seconds, 0, NOW, 2, "active")


async def _ready(value: bool) -> bool:
    return value


class Sessions:
    """Answers each batch once ``release`` is set; records what every call carried."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        self.missing: set[int] = set()
        self.fail_next = False

    async def apply_many(self, handoffs: list[PendingHandoff]) -> list[SessionTotals | NotFound]:
        self.calls.append([h.id for h in handoffs])
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise Unavailable("sessions service unavailable")
        return [NotFound("session not found") if h.id in self.missing else _totals(h) for h in handoffs]


async def test_a_lone_hand_off_leaves_at_once_in_a_call_of_its_own() -> None:
    sessions = Sessions()
    sessions.release.set()
    queue = ApplyQueue(sessions.apply_many)
    assert await queue.apply(_handoff(1)) == _totals(_handoff(1))
    assert await queue.apply(_handoff(2)) == _totals(_handoff(2))
    assert sessions.calls == [[1], [2]]


async def test_hand_offs_of_one_turn_leave_together_and_later_ones_share_the_next_calls() -> None:
    sessions = Sessions()
    queue = ApplyQueue(sessions.apply_many, max_in_flight=2, max_batch=10)
    # Queued in one turn, as a group commit's hand-offs are: they fill the calls out.
    waiting = [asyncio.create_task(queue.apply(_handoff(n))) for n in range(1, 26)]
    await eventually(lambda: _ready(len(sessions.calls) == 2), timeout=5, interval=0.001, what="two calls out")
    assert sessions.calls == [list(range(1, 11)), list(range(11, 21))]
    waiting += [asyncio.create_task(queue.apply(_handoff(n))) for n in range(26, 31)]
    await asyncio.sleep(0.01)
    assert len(sessions.calls) == 2  # the other 10 queue behind the two calls out
    sessions.release.set()
    answers = await asyncio.gather(*waiting)
    assert answers == [_totals(_handoff(n)) for n in range(1, 31)]
    assert sessions.calls[2:] == [list(range(21, 31))]


async def test_an_unknown_session_fails_only_its_own_caller() -> None:
    sessions = Sessions()
    sessions.missing = {2}
    queue = ApplyQueue(sessions.apply_many, max_in_flight=1)
    waiting = [asyncio.create_task(queue.apply(_handoff(n))) for n in (1, 2, 3)]
    sessions.release.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert outcomes[0] == _totals(_handoff(1)) and outcomes[2] == _totals(_handoff(3))
    assert isinstance(outcomes[1], NotFound)


async def test_a_failed_call_fails_its_callers_and_the_next_call_still_goes() -> None:
    sessions = Sessions()
    sessions.fail_next = True
    sessions.release.set()
    queue = ApplyQueue(sessions.apply_many)
    with pytest.raises(Unavailable):
        await queue.apply(_handoff(1))
    assert await queue.apply(_handoff(2)) == _totals(_handoff(2))


async def test_a_caller_that_gives_up_does_not_break_the_others() -> None:
    sessions = Sessions()
    queue = ApplyQueue(sessions.apply_many, max_in_flight=1)
    impatient = asyncio.create_task(queue.apply(_handoff(1)))
    await eventually(lambda: _ready(sessions.calls == [[1]]), timeout=5, interval=0.001, what="the first call out")
    patient = asyncio.create_task(queue.apply(_handoff(2)))
    impatient.cancel()
    sessions.release.set()
    assert await patient == _totals(_handoff(2))
    await queue.close()
