"""How the dashboard writes numbers and instants: template filters, no rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp


def duration(seconds: int | float) -> str:
    """``3725`` as ``1 h 02 min``; under a minute as seconds."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    hours, rest = divmod(whole, 3600)
    minutes = rest // 60
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def percent(score: float) -> str:
    """A productivity score (0..100, as the services give it)."""
    return f"{score:.0f} %"


def instant(stamp: Timestamp | None) -> str:
    """ISO 8601 UTC for ``<time datetime=…>`` and the module's tickers; "" when unset."""
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return ""
    return stamp.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def readable(stamp: Timestamp | None) -> str:
    """The same instant for people (UTC, to the minute); the module rewrites it locally."""
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return ""
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


FILTERS: dict[str, Callable[..., Any]] = {
    "duration": duration,
    "percent": percent,
    "instant": instant,
    "readable": readable,
}
