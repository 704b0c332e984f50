"""Samples into events: consecutive samples with the same app, title, url and state merge.

An event opens at the sample that starts it and gets its client event id then (a uuid4,
so it is stable across resends and restarts); it closes when the next sample differs,
when it reaches the flush interval (at most 10 s by default, so the server's totals
trail the desktop by seconds), or when recording pauses. Durations are whole seconds
computed as ``round(end) - round(start)``, so consecutive events' durations add up to
the covered time exactly, however the samples fall within seconds.

A gap between samples longer than three sampling intervals (the machine slept, the
process was stopped) ends the open event at its last sample plus one interval: time nobody observed
is not counted as activity.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any

from agent.collectors.base import WindowSample
from agent.outbox import StoredEvent

ACTIVE = "active"
IDLE = "idle"


@dataclass(frozen=True, slots=True)
class OpenEvent:
    client_event_id: str
    session_id: str
    activity: str
    app: str
    title: str
    url: str
    started_at: float
    last_seen: float

    def same(self, session_id: str, activity: str, sample: WindowSample) -> bool:
        return (self.session_id, self.activity, self.app, self.title, self.url) == (
            session_id,
            activity,
            sample.app,
            sample.title,
            sample.url,
        )

    def closed(self, end: float) -> StoredEvent | None:
        duration = round(end) - round(self.started_at)
        if duration <= 0:
            return None
        return StoredEvent(
            self.client_event_id,
            self.session_id,
            self.activity,
            self.started_at,
            duration,
            self.app,
            self.title,
            self.url,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OpenEvent:
        return cls(**data)


class Merger:
    """Turns a stream of samples into complete events; holds at most one open event."""

    def __init__(self, flush_seconds: float = 10.0, interval: float = 1.0) -> None:
        self.flush_seconds = flush_seconds
        self.interval = interval
        self.open: OpenEvent | None = None

    @property
    def gap_seconds(self) -> float:
        return 3 * self.interval

    def observe(self, now: float, session_id: str, activity: str, sample: WindowSample) -> list[StoredEvent]:
        """Adds a sample taken at ``now``; returns the events it completed."""
        done: list[StoredEvent] = []
        current = self.open
        if current is not None:
            if now - current.last_seen > self.gap_seconds:
                done += self._close(current.last_seen + self.interval)
                current = None
            elif not current.same(session_id, activity, sample) or now - current.started_at >= self.flush_seconds:
                done += self._close(now)
                current = None
        if current is None:
            self.open = OpenEvent(
                str(uuid.uuid4()), session_id, activity, sample.app, sample.title, sample.url, now, now
            )
        else:
            self.open = replace(current, last_seen=now)
        return done

    def pause(self, now: float) -> list[StoredEvent]:
        """Recording stops (no session, outside tracking hours, a dropped window)."""
        current = self.open
        if current is None:
            return []
        end = now if now - current.last_seen <= self.gap_seconds else current.last_seen + self.interval
        return self._close(end)

    def _close(self, end: float) -> list[StoredEvent]:
        assert self.open is not None
        event = self.open.closed(end)
        self.open = None
        return [event] if event is not None else []
