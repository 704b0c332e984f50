"""Fault points: named places in product code where a test can crash the process on purpose.

TEST-ONLY. A fault point does nothing unless the process was started with the variable
``WORKPULSE_FAULT_POINTS``; production never sets it. It lets an end-to-end test make a
SIGKILL land exactly where a recovery path matters (between a commit and the call that
follows it), on every run, instead of at a random moment that usually misses.

Syntax, read once at start-up by :func:`arm_from_environment` (every process calls it
through ``runtime.start_process``)::

    WORKPULSE_FAULT_POINTS="<point>=kill:<n>[,<point>=kill:<n>...]"

``kill:<n>`` sends SIGKILL to the process itself the ``n``-th time (n >= 1) the point is
reached; the points are counted separately. Spaces around items are ignored; an empty
value arms nothing. Anything else (an unknown point, another action, n < 1, a point named
twice) stops the process with status 2 and a message naming the variable, as a bad
setting does. Just before the kill one line goes to stderr
(``workpulse fault point <point> reached <n> time(s): SIGKILL``) so a test can tell from
the process log that its fault fired; nothing is logged while no point is armed.

The points (:data:`POINTS`), each a one-line ``faults.reached(...)`` call in product code:

- ``ingest.after_commit``: a write's events and totals hand-offs have committed; the
  in-line apply to sessions has not started. Recovery: the hand-off redelivery loop, or a
  resend of the batch settling its session's pending hand-offs.
- ``ingest.after_shared_commit``: the same, reached only by a commit holding writes of
  several organizations (so a test can kill exactly such a commit).
- ``sessions.after_apply``: ``ApplyActivity`` has committed (idempotency key and totals);
  the reply has not been sent. Recovery: ingest applies the same key again, which
  sessions must count once.

Cost when unset: :func:`reached` tests one empty dict and returns.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass

VARIABLE = "WORKPULSE_FAULT_POINTS"

POINTS: Mapping[str, str] = {
    "ingest.after_commit": "events and hand-offs committed, not yet applied to sessions",
    "ingest.after_shared_commit": "the same, in a commit of several organizations' writes",
    "sessions.after_apply": "ApplyActivity committed, reply not yet sent",
}

ACTIONS = ("kill",)


@dataclass
class Trigger:
    """Kill the process the ``at``-th time its point is reached."""

    action: str
    at: int
    reached: int = 0


_armed: dict[str, Trigger] = {}


def parse(value: str) -> dict[str, Trigger]:
    """The triggers a ``WORKPULSE_FAULT_POINTS`` value asks for; ValueError if it is bad."""
    triggers: dict[str, Trigger] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        point, sep, spec = (s.strip() for s in item.partition("="))
        if not sep:
            raise ValueError(f"{item!r}: expected <point>=kill:<n>")
        if point not in POINTS:
            raise ValueError(f"{point!r}: unknown fault point (known: {', '.join(sorted(POINTS))})")
        if point in triggers:
            raise ValueError(f"{point!r}: named twice")
        action, sep, count = (s.strip() for s in spec.partition(":"))
        if action not in ACTIONS or not sep:
            raise ValueError(f"{item!r}: expected <point>=kill:<n>")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"{item!r}: <n> must be a whole number of at least 1")
        triggers[point] = Trigger(action, int(count))
    return triggers


def arm(triggers: Mapping[str, Trigger]) -> None:
    """Replaces the armed triggers (an empty mapping disarms every point)."""
    _armed.clear()
    _armed.update(triggers)


def arm_from_environment(environ: Mapping[str, str] | None = None) -> None:
    """Arms what ``WORKPULSE_FAULT_POINTS`` asks for, or stops the process (status 2)
    naming the variable. Call once at start-up, after the settings are loaded."""
    value = (os.environ if environ is None else environ).get(VARIABLE, "")
    try:
        arm(parse(value))
    except ValueError as exc:
        sys.stderr.write(f"invalid configuration:\n  {VARIABLE}: {exc}\n")
        raise SystemExit(2) from None


def reached(point: str) -> None:
    """Marks that the process reached ``point``; kills it if a test armed that."""
    if _armed:
        _count(point)


def _count(point: str) -> None:
    trigger = _armed.get(point)
    if trigger is None:
        return
    trigger.reached += 1
    if trigger.reached == trigger.at:
        # os.write, not logging: the line must be out before the process is gone.
        os.write(2, f"workpulse fault point {point} reached {trigger.reached} time(s): SIGKILL\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
