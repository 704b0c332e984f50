"""When the supervisor starts an exited process again.

Each process has its own timer: a crash schedules that process's restart and nothing
waits for it, so two processes dying together both come back after the first backoff.
Consecutive crashes double the wait (up to a ceiling); a process that ran for ``stable``
seconds since its last start was healthy, and its next crash starts from the first backoff
again (a crash an hour after the last one is not a crash loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RestartSchedule:
    def __init__(
        self,
        *,
        first: float = 1.0,
        ceiling: float = 30.0,
        stable: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first = first
        self._ceiling = ceiling
        self._stable = stable
        self._clock = clock
        self._backoff: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self._due: dict[str, float] = {}

    def started(self, name: str) -> None:
        self._started[name] = self._clock()

    def exited(self, name: str) -> float:
        """Records that ``name`` is down (again: idempotent until restarted); the time its
        restart is due."""
        if name in self._due:
            return self._due[name]
        now = self._clock()
        ran = now - self._started.get(name, now)
        previous = self._backoff.get(name)
        backoff = self._first if previous is None or ran >= self._stable else min(self._ceiling, previous * 2)
        self._backoff[name] = backoff
        self._due[name] = now + backoff
        return self._due[name]

    def due(self, name: str) -> bool:
        """Whether ``name``'s restart is due now (then it is no longer scheduled)."""
        when = self._due.get(name)
        if when is None or self._clock() < when:
            return False
        del self._due[name]
        return True
