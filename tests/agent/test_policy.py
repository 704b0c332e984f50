"""The policy as the device applies it: drop, redact, titles and URLs, tracking hours."""

from __future__ import annotations

from datetime import UTC, datetime, time

from agent.collectors.base import WindowSample
from agent.policy import REDACTED, Policy, Rule, TrackingWindow
from workpulse.ingest.v1 import ingest_pb2 as pb

SAMPLE = WindowSample("Firefox", "Bank of Examples - account 12345", "https://bank.example/account/12345")


def test_a_drop_rule_drops_the_whole_sample() -> None:
    policy = Policy(drop_rules=(Rule("app", "^fire"),))
    assert policy.apply(SAMPLE) is None
    assert policy.apply(WindowSample("Editor", "x")) == WindowSample("Editor", "x")


def test_drop_rules_see_the_raw_text_before_redaction() -> None:
    policy = Policy(drop_rules=(Rule("title", "12345"),), redact_rules=(Rule("title", r"\d+"),))
    assert policy.apply(SAMPLE) is None


def test_redaction_replaces_only_the_matching_part() -> None:
    policy = Policy(redact_rules=(Rule("title", r"account \d+"), Rule("url", r"/account/.*")))
    result = policy.apply(SAMPLE)
    assert result == WindowSample("Firefox", f"Bank of Examples - {REDACTED}", f"https://bank.example{REDACTED}")


def test_titles_and_urls_stay_on_the_device_when_not_collected() -> None:
    assert Policy(collect_titles=False).apply(SAMPLE) == WindowSample("Firefox", "", SAMPLE.url)
    assert Policy(collect_urls=False).apply(SAMPLE) == WindowSample("Firefox", SAMPLE.title, "")


def test_a_pattern_that_does_not_compile_is_skipped_not_fatal() -> None:
    policy = Policy(redact_rules=(Rule("title", "("), Rule("title", "Bank")))
    result = policy.apply(SAMPLE)
    assert result is not None and result.title.startswith(REDACTED)


def test_tracking_hours_in_the_organizations_zone_and_past_midnight() -> None:
    office = TrackingWindow(frozenset({1, 2, 3, 4, 5}), time(9), time(17))
    policy = Policy(tracking_timezone="Europe/Paris", tracking_windows=(office,))
    assert policy.tracking(datetime(2026, 12, 2, 8, 30, tzinfo=UTC))  # Wednesday 09:30 in Paris
    assert not policy.tracking(datetime(2026, 12, 2, 16, 30, tzinfo=UTC))  # 17:30 in Paris
    assert not policy.tracking(datetime(2026, 12, 5, 10, 0, tzinfo=UTC))  # Saturday
    night = Policy(tracking_windows=(TrackingWindow(frozenset({5}), time(22), time(6)),))
    assert night.tracking(datetime(2026, 12, 4, 23, 0, tzinfo=UTC))  # Friday 23:00
    assert night.tracking(datetime(2026, 12, 5, 5, 0, tzinfo=UTC))  # Saturday 05:00, Friday's night
    assert not night.tracking(datetime(2026, 12, 6, 5, 0, tzinfo=UTC))  # Sunday 05:00: Saturday had none
    assert Policy().tracking(datetime(2026, 12, 6, 5, 0, tzinfo=UTC))  # no hours: always


def test_from_the_servers_answer_and_back_through_json() -> None:
    reply = pb.GetAgentPolicyResponse(
        version=7,
        policy=pb.AgentPolicy(
            idle_threshold_seconds=2,
            window_sample_seconds=1,
            idle_sample_seconds=1,
            collect_titles=False,
            collect_urls=True,
            drop_rules=[pb.AgentRule(field=pb.AGENT_FIELD_APP, pattern="steam")],
            redact_rules=[pb.AgentRule(field=pb.AGENT_FIELD_URL, pattern="token=.*")],
            tracking_hours=pb.TrackingHours(
                timezone="Europe/Paris", windows=[pb.TrackingWindow(weekdays=[1, 2], start="08:00", end="18:30")]
            ),
            agent_silence_seconds=90,
            share_current_app=False,  # the server applies it; the agent reads past it
        ),
    )
    policy = Policy.from_proto(reply)
    assert (policy.version, policy.idle_threshold_seconds, policy.collect_titles) == (7, 2, False)
    assert policy.drop_rules == (Rule("app", "steam"),)
    assert policy.tracking_windows == (TrackingWindow(frozenset({1, 2}), time(8), time(18, 30)),)
    assert Policy.from_json(policy.to_json()) == policy


def test_unset_fields_take_the_products_defaults() -> None:
    policy = Policy.from_proto(pb.GetAgentPolicyResponse(version=0, policy=pb.AgentPolicy()))
    assert policy == Policy()
    assert policy.apply(SAMPLE) == SAMPLE


def test_the_notice_says_what_is_not_collected() -> None:
    text = "\n".join(Policy(collect_titles=False, drop_rules=(Rule("app", "x"),)).describe())
    assert "window titles: NOT collected" in text
    assert "1 rule(s) that leave matching windows out" in text
