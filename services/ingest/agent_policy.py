"""The desktop agent's policy: what it collects and how, set per organization with
per-user overrides. Pure rules (no grpc, no SQL): the product's defaults, validation, the
merge, and the stored (jsonb) form.

A stored policy leaves unset (None) what it inherits: a user's override inherits from the
organization's defaults, and those from the product's (PRODUCT_DEFAULTS). A user's
effective policy is the three merged with every scalar set; rule lists add up (the
organization's, then the user's: a user can be given more rules, never fewer), and
tracking hours are replaced whole (windows of two zones do not combine).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workpulse.errors import InvalidArgument
from workpulse.text import CONTROL_MESSAGE, has_control_character

RULE_FIELDS = ("app", "title", "url")
MAX_RULES = 100  # per list (drop rules, redact rules) of one policy
MAX_PATTERN = 512
MAX_WINDOWS = 50
MAX_TIMEZONE = 64
# Overrides per organization: every user of a large organization, with room; the whole
# document is read by every ingest replica every few seconds (see policy_cache.py).
MAX_USERS = 10_000
# The whole-second settings: (lowest, highest) as the proto comments give them.
RANGES = {
    # From 1 s: a test desktop needs seconds; an organization chooses minutes.
    "idle_threshold_seconds": (1, 3600),
    "window_sample_seconds": (1, 60),
    "idle_sample_seconds": (1, 60),
    "agent_silence_seconds": (30, 86_400),
}
# The yes/no settings (stored as JSON booleans; a document without one inherits it).
SWITCHES = ("collect_titles", "collect_urls", "share_current_app")
# Files of a zoneinfo directory that load as zones but name the host's settings.
_HOST_FILES = frozenset({"localtime", "posixrules"})
_HH_MM = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AgentRule:
    """A case-insensitive regular expression searched anywhere in one field of an event."""

    field: str  # one of RULE_FIELDS
    pattern: str


@dataclass(frozen=True, slots=True)
class TrackingWindow:
    weekdays: tuple[int, ...]  # ISO, 1 (Monday) .. 7; empty: every day
    start: str  # "HH:MM"
    end: str  # before the start: runs past midnight; equal: the whole day from start


@dataclass(frozen=True, slots=True)
class TrackingHours:
    timezone: str  # IANA
    windows: tuple[TrackingWindow, ...]


@dataclass(frozen=True, slots=True)
class AgentPolicy:
    """A stored policy: None (and empty rule lists) inherit."""

    idle_threshold_seconds: int | None = None
    window_sample_seconds: int | None = None
    idle_sample_seconds: int | None = None
    collect_titles: bool | None = None
    collect_urls: bool | None = None
    drop_rules: tuple[AgentRule, ...] = ()
    redact_rules: tuple[AgentRule, ...] = ()
    tracking_hours: TrackingHours | None = None
    agent_silence_seconds: int | None = None
    share_current_app: bool | None = None


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """What one user's agent does: every scalar decided."""

    idle_threshold_seconds: int
    window_sample_seconds: int
    idle_sample_seconds: int
    collect_titles: bool
    collect_urls: bool
    drop_rules: tuple[AgentRule, ...]
    redact_rules: tuple[AgentRule, ...]
    tracking_hours: TrackingHours | None  # None: always
    agent_silence_seconds: int
    share_current_app: bool  # whether managers see the app of the member's latest activity


PRODUCT_DEFAULTS = EffectivePolicy(
    idle_threshold_seconds=300,
    window_sample_seconds=1,
    idle_sample_seconds=5,
    collect_titles=True,
    collect_urls=True,
    drop_rules=(),
    redact_rules=(),
    tracking_hours=None,
    agent_silence_seconds=120,
    share_current_app=True,
)


def _pick(override: T | None, base: T) -> T:
    return base if override is None else override


def merged(base: EffectivePolicy, over: AgentPolicy) -> EffectivePolicy:
    """``base`` with what ``over`` sets; ``over``'s rules after ``base``'s."""
    return EffectivePolicy(
        idle_threshold_seconds=_pick(over.idle_threshold_seconds, base.idle_threshold_seconds),
        window_sample_seconds=_pick(over.window_sample_seconds, base.window_sample_seconds),
        idle_sample_seconds=_pick(over.idle_sample_seconds, base.idle_sample_seconds),
        collect_titles=_pick(over.collect_titles, base.collect_titles),
        collect_urls=_pick(over.collect_urls, base.collect_urls),
        drop_rules=base.drop_rules + over.drop_rules,
        redact_rules=base.redact_rules + over.redact_rules,
        tracking_hours=_pick(over.tracking_hours, base.tracking_hours),
        agent_silence_seconds=_pick(over.agent_silence_seconds, base.agent_silence_seconds),
        share_current_app=_pick(over.share_current_app, base.share_current_app),
    )


_NOTHING = AgentPolicy()


@dataclass(frozen=True)
class OrganizationPolicy:
    """An organization's stored policy; version 0 (the default) when it never stored one."""

    version: int = 0
    defaults: AgentPolicy = _NOTHING
    users: Mapping[str, AgentPolicy] = field(default_factory=dict)  # canonical user id -> override
    updated_at: datetime | None = None
    updated_by: str | None = None

    def effective(self, user_id: str) -> EffectivePolicy:
        """``user_id``'s policy: the product's defaults ← the organization's ← the user's."""
        organization = merged(PRODUCT_DEFAULTS, self.defaults)
        return merged(organization, self.users.get(user_id, _NOTHING))

    def collects(self, user_id: str) -> tuple[bool, bool, bool]:
        """(titles, urls, current app shared) for ``user_id``: the hot path's part of
        :meth:`effective` (three lookups, not a merge of every field and rule list)."""
        own, org = self.users.get(user_id, _NOTHING), self.defaults
        titles = _pick(own.collect_titles, _pick(org.collect_titles, PRODUCT_DEFAULTS.collect_titles))
        urls = _pick(own.collect_urls, _pick(org.collect_urls, PRODUCT_DEFAULTS.collect_urls))
        app = _pick(own.share_current_app, _pick(org.share_current_app, PRODUCT_DEFAULTS.share_current_app))
        return titles, urls, app

    @property
    def agent_silence_seconds(self) -> int:
        """The organization's allowance (its defaults over the product's)."""
        return _pick(self.defaults.agent_silence_seconds, PRODUCT_DEFAULTS.agent_silence_seconds)


def _refuse(where: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{where}: {message}", field=where)


def _check_rules(rules: Sequence[AgentRule], where: str) -> None:
    if len(rules) > MAX_RULES:
        raise _refuse(where, f"at most {MAX_RULES} rules")
    for n, rule in enumerate(rules):
        at = f"{where}.{n}"
        if rule.field not in RULE_FIELDS:
            raise _refuse(f"{at}.field", "must be app, title or url")
        if not rule.pattern:
            raise _refuse(f"{at}.pattern", "required")
        if len(rule.pattern) > MAX_PATTERN:
            raise _refuse(f"{at}.pattern", f"at most {MAX_PATTERN} characters")
        if has_control_character(rule.pattern):
            raise _refuse(f"{at}.pattern", CONTROL_MESSAGE)
        if (problem := _pattern_problem(rule.pattern)) is not None:
            raise _refuse(f"{at}.pattern", problem)


@functools.lru_cache(maxsize=4096)
def _pattern_problem(pattern: str) -> str | None:
    """Why the agent could not compile ``pattern``, or None. Remembered: a document with
    thousands of users tends to repeat the same few patterns, each compiled once."""
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        return f"not a regular expression ({exc.msg} at position {exc.pos})"
    except (OverflowError, RecursionError, ValueError):  # a repeat count too large, nesting too deep
        return "not a regular expression the agent can compile"
    return None


def _check_zone(name: str, where: str) -> None:
    if not name:
        raise _refuse(where, "required (an IANA time zone such as Europe/Berlin)")
    if len(name) > MAX_TIMEZONE or has_control_character(name):
        raise _refuse(where, "not an IANA time zone")
    try:
        if name in _HOST_FILES:
            raise ZoneInfoNotFoundError(name)  # the server's own files, not zones every agent knows
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _refuse(where, f"unknown time zone {name!r}") from None


def _check_hours(hours: TrackingHours, where: str) -> None:
    _check_zone(hours.timezone, f"{where}.timezone")
    if not hours.windows:
        raise _refuse(f"{where}.windows", "at least one window (leave tracking_hours unset to record always)")
    if len(hours.windows) > MAX_WINDOWS:
        raise _refuse(f"{where}.windows", f"at most {MAX_WINDOWS} windows")
    for n, window in enumerate(hours.windows):
        at = f"{where}.windows.{n}"
        for k, day in enumerate(window.weekdays):
            if not 1 <= day <= 7:
                raise _refuse(f"{at}.weekdays.{k}", "must be 1 (Monday) .. 7 (Sunday)")
        if len(set(window.weekdays)) != len(window.weekdays):
            raise _refuse(f"{at}.weekdays", "each day at most once")
        for name, value in (("start", window.start), ("end", window.end)):
            if _HH_MM.fullmatch(value) is None:
                raise _refuse(f"{at}.{name}", 'must be "HH:MM", 00:00 .. 23:59')


def check_policy(policy: AgentPolicy, where: str) -> None:
    """InvalidArgument naming the first field of ``policy`` (at ``where``) out of its rules."""
    for name, (low, high) in RANGES.items():
        value = getattr(policy, name)
        if value is not None and not low <= value <= high:
            raise _refuse(f"{where}.{name}", f"must be {low}..{high}")
    _check_rules(policy.drop_rules, f"{where}.drop_rules")
    _check_rules(policy.redact_rules, f"{where}.redact_rules")
    if policy.tracking_hours is not None:
        _check_hours(policy.tracking_hours, f"{where}.tracking_hours")


def checked_document(
    defaults: AgentPolicy, users: Sequence[tuple[str, AgentPolicy]]
) -> tuple[AgentPolicy, dict[str, AgentPolicy]]:
    """The organization's defaults and its overrides by canonical user id, once every
    field is within its rules; InvalidArgument naming the first that is not."""
    if len(users) > MAX_USERS:
        raise _refuse("users", f"at most {MAX_USERS} entries")
    check_policy(defaults, "defaults")
    by_user: dict[str, AgentPolicy] = {}
    for n, (user_id, policy) in enumerate(users):
        try:
            canonical = str(uuid.UUID(user_id))
        except ValueError:
            raise _refuse(f"users.{n}.user_id", "must be a UUID") from None
        if canonical in by_user:
            raise _refuse(f"users.{n}.user_id", "this user already has an entry (one per user)")
        check_policy(policy, f"users.{n}.policy")
        by_user[canonical] = policy
    return defaults, by_user


# The stored form (jsonb): snake_case keys as in the proto, unset fields left out.


def _rule_json(rule: AgentRule) -> dict[str, str]:
    return {"field": rule.field, "pattern": rule.pattern}


def policy_json(policy: AgentPolicy) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in (*RANGES, *SWITCHES):
        if (value := getattr(policy, name)) is not None:
            found[name] = value
    if policy.drop_rules:
        found["drop_rules"] = [_rule_json(r) for r in policy.drop_rules]
    if policy.redact_rules:
        found["redact_rules"] = [_rule_json(r) for r in policy.redact_rules]
    if (hours := policy.tracking_hours) is not None:
        windows = [{"weekdays": list(w.weekdays), "start": w.start, "end": w.end} for w in hours.windows]
        found["tracking_hours"] = {"timezone": hours.timezone, "windows": windows}
    return found


def document_json(defaults: AgentPolicy, users: Mapping[str, AgentPolicy]) -> dict[str, Any]:
    """What the organization's row stores."""
    return {
        "defaults": policy_json(defaults),
        "users": [{"user_id": user_id, "policy": policy_json(p)} for user_id, p in users.items()],
    }


def _rules(raw: Any) -> tuple[AgentRule, ...]:
    return tuple(AgentRule(str(r["field"]), str(r["pattern"])) for r in raw or ())


def policy_from_json(raw: Mapping[str, Any]) -> AgentPolicy:
    hours = raw.get("tracking_hours")
    return AgentPolicy(
        idle_threshold_seconds=raw.get("idle_threshold_seconds"),
        window_sample_seconds=raw.get("window_sample_seconds"),
        idle_sample_seconds=raw.get("idle_sample_seconds"),
        collect_titles=raw.get("collect_titles"),
        collect_urls=raw.get("collect_urls"),
        drop_rules=_rules(raw.get("drop_rules")),
        redact_rules=_rules(raw.get("redact_rules")),
        tracking_hours=None
        if hours is None
        else TrackingHours(
            str(hours["timezone"]),
            tuple(
                TrackingWindow(tuple(int(d) for d in w["weekdays"]), str(w["start"]), str(w["end"]))
                for w in hours["windows"]
            ),
        ),
        agent_silence_seconds=raw.get("agent_silence_seconds"),
        share_current_app=raw.get("share_current_app"),
    )


def document_from_json(raw: Mapping[str, Any]) -> tuple[AgentPolicy, dict[str, AgentPolicy]]:
    """The (defaults, overrides by user) a stored document holds (written by document_json)."""
    users = {str(u["user_id"]): policy_from_json(u["policy"]) for u in raw.get("users", ())}
    return policy_from_json(raw.get("defaults", {})), users


def updated_event(organization_id: str, policy: OrganizationPolicy) -> dict[str, Any]:
    """The AGENT_POLICY_UPDATED payload: what realtime needs (the silence allowance)."""
    return {
        "organizationId": organization_id,
        "version": policy.version,
        "agentSilenceSeconds": policy.agent_silence_seconds,
    }
