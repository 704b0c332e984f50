"""The organization's agent policy as the device applies it.

The server sends the effective policy (organization defaults with this user's override,
every field set; ``IngestService.GetAgentPolicy``). The agent applies it to every sample
before anything reaches the disk: drop rules (the sample is not recorded at all),
titles and URLs left out where the policy does not collect them, redaction rules, and
tracking hours (outside them nothing is recorded). The last policy fetched is kept in
the outbox's state, so an agent that starts offline applies what it last knew, never
a laxer default.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.collectors.base import WindowSample
from workpulse.ingest.v1 import ingest_pb2 as pb

logger = logging.getLogger("workpulse.agent.policy")

REDACTED = "[redacted]"
FIELDS = {pb.AGENT_FIELD_APP: "app", pb.AGENT_FIELD_TITLE: "title", pb.AGENT_FIELD_URL: "url"}


@dataclass(frozen=True, slots=True)
class Rule:
    field: str  # "app" | "title" | "url"
    pattern: str

    def compiled(self) -> re.Pattern[str] | None:
        try:
            return re.compile(self.pattern, re.IGNORECASE)
        except re.error:
            # The server validates every pattern; one it let through (a newer regex
            # dialect) is skipped here rather than stopping the agent.
            logger.warning(
                "agent policy rule ignored: pattern does not compile", extra={"fields": {"rule": self.field}}
            )
            return None


@dataclass(frozen=True, slots=True)
class TrackingWindow:
    weekdays: frozenset[int]  # ISO 1..7; empty: every day
    start: time
    end: time

    def covers(self, local: datetime) -> bool:
        now = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self._day(local.isoweekday()) and self.start <= now < self.end
        # Runs past midnight: the evening part belongs to the day it starts on, the morning
        # part to the day before.
        if now >= self.start:
            return self._day(local.isoweekday())
        return now < self.end and self._day((local.isoweekday() - 2) % 7 + 1)

    def _day(self, weekday: int) -> bool:
        return not self.weekdays or weekday in self.weekdays


@dataclass(frozen=True)
class Policy:
    """The effective policy; the defaults are the product's, used until one is fetched."""

    version: int = 0
    idle_threshold_seconds: int = 300
    window_sample_seconds: int = 1
    idle_sample_seconds: int = 5
    collect_titles: bool = True
    collect_urls: bool = True
    drop_rules: tuple[Rule, ...] = ()
    redact_rules: tuple[Rule, ...] = ()
    tracking_timezone: str | None = None
    tracking_windows: tuple[TrackingWindow, ...] = ()
    agent_silence_seconds: int = 120
    _drop: tuple[tuple[str, re.Pattern[str]], ...] = field(default=(), repr=False, compare=False)
    _redact: tuple[tuple[str, re.Pattern[str]], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_drop", _compile(self.drop_rules))
        object.__setattr__(self, "_redact", _compile(self.redact_rules))

    # -- applying ----------------------------------------------------------------------

    def tracking(self, at: datetime) -> bool:
        """Whether the agent records at this moment (an aware datetime)."""
        if not self.tracking_windows:
            return True
        try:
            zone = ZoneInfo(self.tracking_timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        local = at.astimezone(zone)
        return any(w.covers(local) for w in self.tracking_windows)

    def apply(self, sample: WindowSample) -> WindowSample | None:
        """What of ``sample`` may be recorded: None when a drop rule matches."""
        values = {"app": sample.app, "title": sample.title, "url": sample.url}
        if any(pattern.search(values[name]) for name, pattern in self._drop):
            return None
        if not self.collect_titles:
            values["title"] = ""
        if not self.collect_urls:
            values["url"] = ""
        for name, pattern in self._redact:
            if values[name]:
                values[name] = pattern.sub(REDACTED, values[name])
        return replace(sample, **values)

    def describe(self) -> list[str]:
        """What the organization collects, in words, for the first-run notice."""
        lines = [
            f"the name of the application in front, sampled every {self.window_sample_seconds} s",
            f"whether you are active or idle (idle after {self.idle_threshold_seconds} s without keyboard or mouse "
            "input; the agent reads only the time since the last input, never what was typed)",
            "window titles" + ("" if self.collect_titles else ": NOT collected"),
            "web addresses (URLs)" + ("" if self.collect_urls else ": NOT collected"),
        ]
        if self.drop_rules:
            lines.append(f"{len(self.drop_rules)} rule(s) that leave matching windows out entirely")
        if self.redact_rules:
            lines.append(f"{len(self.redact_rules)} rule(s) that hide matching text before it is stored")
        if self.tracking_windows:
            lines.append(f"only within the organization's tracking hours ({self.tracking_timezone})")
        return lines

    # -- conversions -------------------------------------------------------------------

    @classmethod
    def from_proto(cls, reply: pb.GetAgentPolicyResponse) -> Policy:
        p = reply.policy
        defaults = cls()
        hours = p.tracking_hours if p.HasField("tracking_hours") else None
        return cls(
            version=reply.version,
            idle_threshold_seconds=_set_or(p, "idle_threshold_seconds", defaults.idle_threshold_seconds),
            window_sample_seconds=_set_or(p, "window_sample_seconds", defaults.window_sample_seconds),
            idle_sample_seconds=_set_or(p, "idle_sample_seconds", defaults.idle_sample_seconds),
            collect_titles=_set_or(p, "collect_titles", defaults.collect_titles),
            collect_urls=_set_or(p, "collect_urls", defaults.collect_urls),
            drop_rules=tuple(Rule(FIELDS[r.field], r.pattern) for r in p.drop_rules if r.field in FIELDS),
            redact_rules=tuple(Rule(FIELDS[r.field], r.pattern) for r in p.redact_rules if r.field in FIELDS),
            tracking_timezone=hours.timezone if hours is not None else None,
            tracking_windows=tuple(
                TrackingWindow(frozenset(w.weekdays), _hhmm(w.start), _hhmm(w.end)) for w in hours.windows
            )
            if hours is not None
            else (),
            agent_silence_seconds=_set_or(p, "agent_silence_seconds", defaults.agent_silence_seconds),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "idle_threshold_seconds": self.idle_threshold_seconds,
            "window_sample_seconds": self.window_sample_seconds,
            "idle_sample_seconds": self.idle_sample_seconds,
            "collect_titles": self.collect_titles,
            "collect_urls": self.collect_urls,
            "drop_rules": [[r.field, r.pattern] for r in self.drop_rules],
            "redact_rules": [[r.field, r.pattern] for r in self.redact_rules],
            "tracking_timezone": self.tracking_timezone,
            "tracking_windows": [
                [sorted(w.weekdays), w.start.strftime("%H:%M"), w.end.strftime("%H:%M")] for w in self.tracking_windows
            ],
            "agent_silence_seconds": self.agent_silence_seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
        return cls(
            version=int(data["version"]),
            idle_threshold_seconds=int(data["idle_threshold_seconds"]),
            window_sample_seconds=int(data["window_sample_seconds"]),
            idle_sample_seconds=int(data["idle_sample_seconds"]),
            collect_titles=bool(data["collect_titles"]),
            collect_urls=bool(data["collect_urls"]),
            drop_rules=tuple(Rule(f, p) for f, p in data["drop_rules"]),
            redact_rules=tuple(Rule(f, p) for f, p in data["redact_rules"]),
            tracking_timezone=data["tracking_timezone"],
            tracking_windows=tuple(
                TrackingWindow(frozenset(days), _hhmm(start), _hhmm(end))
                for days, start, end in data["tracking_windows"]
            ),
            agent_silence_seconds=int(data["agent_silence_seconds"]),
        )


def _compile(rules: tuple[Rule, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((r.field, c) for r in rules if (c := r.compiled()) is not None)


def _set_or(message: pb.AgentPolicy, name: str, default: Any) -> Any:
    return getattr(message, name) if message.HasField(name) else default  # type: ignore[arg-type]


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))
