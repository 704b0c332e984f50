"""Every collector call, guarded against a hung or broken backend.

An X request blocks until the server answers, and a stopped or wedged server never does.
So each backend lives on a worker thread of its own: a call that does not return within
the timeout is abandoned together with its thread and its backend, and a fresh backend
is built (from the factory) on a fresh thread. A hung call therefore never starves the
next backend, and the agent keeps sampling; the samples read "unknown" until a backend
works again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.collectors.base import UNKNOWN_APP, Backend, WindowSample

_log = logging.getLogger("workpulse.agent.collectors")

_T = TypeVar("_T")


class _Worker:
    """One daemon thread that runs the calls submitted to it, in order.

    Not a ``ThreadPoolExecutor``: the interpreter joins those threads at exit, so a call
    hung in the X library would hang the agent's exit too.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None]
        self._jobs = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, call: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._jobs.put((call, future))
        return future

    def stop(self) -> None:
        """The thread ends once the calls already submitted have run."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, future = job
            if not future.set_running_or_notify_cancel():
                continue  # its caller gave up before it started
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the awaiting caller, never lost in the thread
                future.set_exception(exc)


@dataclass(frozen=True, slots=True)
class _Live:
    backend: Backend
    worker: _Worker


class GuardedCollector:
    """The agent's view of a backend: calls that always return within about ``timeout``.

    A call that times out or raises abandons its backend (closed on its own thread, should
    the hung call ever return) and reports the unknown sample or None; the next call after
    a backoff (``backoff`` seconds, doubling per consecutive failure up to ``max_backoff``,
    so a dead display does not spin) builds a new backend. ``restarts`` counts the
    backends abandoned so far.
    """

    def __init__(
        self,
        factory: Callable[[], Backend],
        timeout: float = 2.0,
        *,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._timeout = timeout
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._clock = clock
        self._live: _Live | None = None
        self._building = asyncio.Lock()
        self._streak = 0  # consecutive failures; the warning is logged on the first only
        self._retry_at = 0.0
        self._built = 0
        # A BackendChoice knows its backend's name before building it.
        self._name = str(getattr(factory, "name", "none"))
        self._closed = False
        self.restarts = 0

    @property
    def name(self) -> str:
        """The name of the backend in use, or of the last one built (or chosen)."""
        return self._name

    @property
    def working(self) -> bool:
        """Whether a backend is in place (False after a failure, until a new one is built)."""
        return self._live is not None

    async def active_window(self) -> WindowSample:
        return await self._call(lambda backend: backend.active_window(), WindowSample(UNKNOWN_APP))

    async def idle_seconds(self) -> float | None:
        return await self._call(lambda backend: backend.idle_seconds(), None)

    def close(self) -> None:
        """Closes the backend on its own thread, in the background: a backend hung in a
        call is never waited for (its thread is a daemon and dies with the process).
        Calls after ``close`` report unknown and build nothing."""
        self._closed = True
        live, self._live = self._live, None
        if live is not None:
            live.worker.submit(live.backend.close)
            live.worker.stop()

    async def _call(self, read: Callable[[Backend], _T], fallback: _T) -> _T:
        live = await self._current()
        if live is None:
            return fallback
        try:
            result = await self._run(live.worker, lambda: read(live.backend))
        except Exception as exc:  # TimeoutError included: hung or broken, either way abandoned
            self._abandon(live, exc)
            return fallback
        if self._streak:
            _log.info("collector %s works again after %d failure(s)", live.backend.name, self._streak)
            self._streak = 0
        return result

    async def _run(self, worker: _Worker, call: Callable[[], _T]) -> _T:
        return await asyncio.wait_for(asyncio.wrap_future(worker.submit(call)), self._timeout)

    async def _current(self) -> _Live | None:
        async with self._building:
            if self._live is not None or self._closed:
                return self._live
            if self._clock() < self._retry_at:
                return None
            self._built += 1
            worker = _Worker(f"workpulse-collector-{self._built}")
            building = worker.submit(self._factory)
            try:
                backend = await asyncio.wait_for(asyncio.wrap_future(building), self._timeout)
            except Exception as exc:
                # A factory that hangs and returns later must not leak its connection: the
                # close is queued behind it, on the same thread.
                worker.submit(lambda: _close_if_built(building))
                worker.stop()
                self._failed(exc)
                return None
            self._live = _Live(backend, worker)
            self._name = backend.name
            return self._live

    def _abandon(self, live: _Live, exc: Exception) -> None:
        if self._live is not live:
            return  # a concurrent call already abandoned it
        self._live = None
        self.restarts += 1
        # Queued behind the hung call, the close runs on the backend's own thread if that
        # call ever returns; its outcome is nobody's concern.
        live.worker.submit(live.backend.close)
        live.worker.stop()
        self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self._streak += 1
        delay = min(self._max_backoff, self._backoff * 2 ** (self._streak - 1))
        self._retry_at = self._clock() + delay
        reason = _describe(exc, self._timeout)
        if self._streak == 1:
            _log.warning("collector %s failed (%s); reporting unknown until a new one works", self._name, reason)
        else:
            _log.debug("collector %s failed again (%s); next try in %.1fs", self._name, reason, delay)


def _close_if_built(building: concurrent.futures.Future[Backend]) -> None:
    if not building.done() or building.cancelled() or building.exception() is not None:
        return
    try:
        building.result().close()
    except Exception as exc:  # runs on the abandoned worker thread: nowhere to report but the log
        _log.debug("abandoned collector did not close cleanly: %s", exc)


def _describe(exc: Exception, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    return f"{type(exc).__name__}: {exc}"
