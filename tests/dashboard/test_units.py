"""The dashboard's small pure parts: presence names, number formats, the chart's days,
the policy form, and which requests a page answers."""

from __future__ import annotations

import pytest

from gateway.dashboard.agent_policy import apply_form
from gateway.dashboard.formats import duration
from gateway.dashboard.live import state_of
from gateway.dashboard.reports import chart_data
from gateway.dashboard.routing import wants_page
from gateway.errors import HTTPError
from workpulse.ingest.v1 import ingest_pb2
from workpulse.realtime.v1 import realtime_pb2
from workpulse.scheduler.v1 import scheduler_pb2


@pytest.mark.parametrize(
    ("activity", "state"),
    [
        (realtime_pb2.ACTIVITY_ACTIVE, "active"),
        (realtime_pb2.ACTIVITY_IDLE, "idle"),
        (realtime_pb2.ACTIVITY_AGENT_SILENT, "agent_silent"),
        (realtime_pb2.ACTIVITY_UNSPECIFIED, "online"),
    ],
)
def test_presence_states(activity: int, state: str) -> None:
    assert state_of(realtime_pb2.UserPresence(activity=activity)) == state  # type: ignore[arg-type]


def test_someone_absent_from_presence_is_offline() -> None:
    assert state_of(None) == "offline"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (59, "59 s"), (60, "1 min"), (3725, "1 h 02 min")])
def test_durations(seconds: int, text: str) -> None:
    assert duration(seconds) == text


def test_the_chart_has_every_day_of_the_range() -> None:
    day = scheduler_pb2.DailySummary(date="2026-03-02", active_seconds=60, idle_seconds=30)
    assert chart_data([day], "2026-03-01", "2026-03-03") == {
        "dates": ["2026-03-01", "2026-03-02", "2026-03-03"],
        "active": [0, 60, 0],
        "idle": [0, 30, 0],
    }


def test_the_policy_form_sets_clears_and_keeps() -> None:
    stored = ingest_pb2.AgentPolicy(idle_threshold_seconds=60, collect_urls=False)
    stored.drop_rules.add(pattern="bank")
    changed = apply_form(stored, {"idle_threshold_seconds": "", "agent_silence_seconds": "300", "collect_titles": "no"})
    assert not changed.HasField("idle_threshold_seconds")  # emptied: inherited
    assert changed.agent_silence_seconds == 300
    assert changed.HasField("collect_titles") and not changed.collect_titles
    assert not changed.HasField("collect_urls")
    assert [r.pattern for r in changed.drop_rules] == ["bank"]  # untouched by the form
    with pytest.raises(HTTPError):
        apply_form(stored, {"agent_silence_seconds": "1e3"})


@pytest.mark.parametrize(
    ("headers", "page"),
    [
        ({"accept": "text/html,application/xhtml+xml"}, True),
        ({"sec-fetch-dest": "document", "accept": "*/*"}, True),
        ({"accept": "application/json"}, False),
        ({"accept": "*/*"}, False),
        ({}, False),
        ({"accept": "text/html", "authorization": "Bearer x"}, False),
    ],
)
def test_which_requests_get_a_page(headers: dict[str, str], page: bool) -> None:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    assert wants_page({"type": "http", "headers": raw}) is page
