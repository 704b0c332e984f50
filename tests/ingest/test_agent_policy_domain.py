"""The agent policy's rules without I/O: validation naming the field, the merge, the
stored (jsonb) form and the protobuf translation."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest

from services.ingest.agent_policy import (
    MAX_USERS,
    PRODUCT_DEFAULTS,
    AgentPolicy,
    AgentRule,
    OrganizationPolicy,
    TrackingHours,
    TrackingWindow,
    checked_document,
    document_from_json,
    document_json,
    updated_event,
)
from services.ingest.policy_messages import organization_message, policy_message, policy_of, users_of
from workpulse.errors import InvalidArgument
from workpulse.ingest.v1 import ingest_pb2 as pb

USER = str(uuid.uuid4())
NINE_TO_FIVE = TrackingHours("Europe/Berlin", (TrackingWindow((1, 2, 3, 4, 5), "09:00", "17:00"),))


def _hours(**window: Any) -> TrackingHours:
    return TrackingHours("Europe/Berlin", (replace(NINE_TO_FIVE.windows[0], **window),))


def _rule(field: str = "app", pattern: str = "secret") -> AgentRule:
    return AgentRule(field, pattern)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (AgentPolicy(idle_threshold_seconds=0), "defaults.idle_threshold_seconds: must be 1..3600"),
        (AgentPolicy(idle_threshold_seconds=3601), "defaults.idle_threshold_seconds: must be 1..3600"),
        (AgentPolicy(window_sample_seconds=0), "defaults.window_sample_seconds: must be 1..60"),
        (AgentPolicy(window_sample_seconds=61), "defaults.window_sample_seconds: must be 1..60"),
        (AgentPolicy(idle_sample_seconds=-5), "defaults.idle_sample_seconds: must be 1..60"),
        (AgentPolicy(agent_silence_seconds=29), "defaults.agent_silence_seconds: must be 30..86400"),
        (AgentPolicy(agent_silence_seconds=86_401), "defaults.agent_silence_seconds: must be 30..86400"),
        (AgentPolicy(drop_rules=(_rule("window"),)), "defaults.drop_rules.0.field: must be app, title or url"),
        (AgentPolicy(drop_rules=(_rule(pattern=""),)), "defaults.drop_rules.0.pattern: required"),
        (AgentPolicy(redact_rules=(_rule(), _rule(pattern="x" * 513))), "redact_rules.1.pattern: at most 512"),
        (AgentPolicy(drop_rules=(_rule(pattern="(unclosed"),)), "drop_rules.0.pattern: not a regular expression"),
        (AgentPolicy(drop_rules=(_rule(pattern="a{99999999999}"),)), "drop_rules.0.pattern: not a regular"),
        (AgentPolicy(drop_rules=(_rule(pattern="a\x00b"),)), "drop_rules.0.pattern: must not contain control"),
        (AgentPolicy(drop_rules=(_rule(),) * 101), "defaults.drop_rules: at most 100 rules"),
        (AgentPolicy(tracking_hours=TrackingHours("", NINE_TO_FIVE.windows)), "tracking_hours.timezone: required"),
        (AgentPolicy(tracking_hours=TrackingHours("Mars/Olympus", ())), "tracking_hours.timezone: unknown time zone"),
        (AgentPolicy(tracking_hours=TrackingHours("../../etc/passwd", ())), "tracking_hours.timezone: unknown"),
        (AgentPolicy(tracking_hours=TrackingHours("UTC", ())), "tracking_hours.windows: at least one window"),
        (AgentPolicy(tracking_hours=_hours(weekdays=(0,))), "tracking_hours.windows.0.weekdays.0: must be 1"),
        (AgentPolicy(tracking_hours=_hours(weekdays=(1, 8))), "tracking_hours.windows.0.weekdays.1: must be 1"),
        (AgentPolicy(tracking_hours=_hours(weekdays=(2, 2))), "tracking_hours.windows.0.weekdays: each day"),
        (AgentPolicy(tracking_hours=_hours(start="9:00")), 'tracking_hours.windows.0.start: must be "HH:MM"'),
        (AgentPolicy(tracking_hours=_hours(end="24:00")), 'tracking_hours.windows.0.end: must be "HH:MM"'),
        (AgentPolicy(tracking_hours=_hours(end="17:60")), 'tracking_hours.windows.0.end: must be "HH:MM"'),
    ],
)
def test_each_field_out_of_its_rules_is_refused_by_name(policy: AgentPolicy, message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        checked_document(policy, [])
    assert message in refused.value.message
    assert refused.value.message.startswith("defaults.")
    assert refused.value.field == refused.value.message.split(":")[0]


def test_the_bounds_themselves_and_night_shifts_are_accepted() -> None:
    edges = AgentPolicy(
        idle_threshold_seconds=30,
        window_sample_seconds=60,
        idle_sample_seconds=1,
        agent_silence_seconds=86_400,
        drop_rules=(_rule("url", "x" * 512),) * 100,
        redact_rules=(_rule("title", r"\d{4}-\d{4}"),),
        tracking_hours=TrackingHours(
            "America/New_York",
            (TrackingWindow((), "22:00", "06:00"), TrackingWindow((7,), "00:00", "00:00")),
        ),
    )
    defaults, users = checked_document(edges, [])
    assert defaults == edges and users == {}


def test_user_entries_are_uuids_one_per_user_and_checked_under_their_index() -> None:
    other = str(uuid.uuid4())
    with pytest.raises(InvalidArgument, match=r"^users\.1\.user_id: must be a UUID"):
        checked_document(AgentPolicy(), [(USER, AgentPolicy()), ("bob", AgentPolicy())])
    with pytest.raises(InvalidArgument, match=r"^users\.2\.user_id: this user already has an entry"):
        checked_document(AgentPolicy(), [(USER, AgentPolicy()), (other, AgentPolicy()), (USER.upper(), AgentPolicy())])
    with pytest.raises(InvalidArgument, match=r"^users\.1\.policy\.idle_sample_seconds: must be 1\.\.60"):
        checked_document(AgentPolicy(), [(USER, AgentPolicy()), (other, AgentPolicy(idle_sample_seconds=0))])
    with pytest.raises(InvalidArgument, match=rf"^users: at most {MAX_USERS} entries"):
        checked_document(AgentPolicy(), [(str(uuid.uuid4()), AgentPolicy())] * (MAX_USERS + 1))
    _, users = checked_document(AgentPolicy(), [(USER.upper(), AgentPolicy(collect_urls=False))])
    assert users == {USER: AgentPolicy(collect_urls=False)}  # canonical ids


def test_nothing_stored_is_the_products_defaults() -> None:
    nothing = OrganizationPolicy()
    assert nothing.version == 0
    assert nothing.effective(USER) == PRODUCT_DEFAULTS
    assert (PRODUCT_DEFAULTS.idle_threshold_seconds, PRODUCT_DEFAULTS.window_sample_seconds) == (300, 1)
    assert (PRODUCT_DEFAULTS.idle_sample_seconds, PRODUCT_DEFAULTS.agent_silence_seconds) == (5, 120)
    assert (PRODUCT_DEFAULTS.collect_titles, PRODUCT_DEFAULTS.collect_urls) == (True, True)
    assert (PRODUCT_DEFAULTS.drop_rules, PRODUCT_DEFAULTS.tracking_hours) == ((), None)
    assert PRODUCT_DEFAULTS.share_current_app is True
    assert nothing.collects(USER) == (True, True, True)


def test_the_user_overrides_the_organization_which_overrides_the_product() -> None:
    org_rule, user_rule = _rule("app", "bank"), _rule("url", "mail")
    stored = OrganizationPolicy(
        3,
        AgentPolicy(
            idle_threshold_seconds=600, collect_titles=False, drop_rules=(org_rule,), tracking_hours=NINE_TO_FIVE
        ),
        {
            USER: AgentPolicy(
                idle_threshold_seconds=120, collect_titles=True, collect_urls=False, drop_rules=(user_rule,)
            )
        },
    )
    mine, someone = stored.effective(USER), stored.effective(str(uuid.uuid4()))
    assert (mine.idle_threshold_seconds, mine.collect_titles, mine.collect_urls) == (120, True, False)
    assert mine.drop_rules == (org_rule, user_rule)  # the organization's first, then the user's
    assert mine.tracking_hours == NINE_TO_FIVE  # inherited: the override leaves it unset
    assert (mine.window_sample_seconds, mine.agent_silence_seconds) == (1, 120)  # the product's
    assert (someone.idle_threshold_seconds, someone.collect_titles, someone.drop_rules) == (600, False, (org_rule,))
    assert stored.collects(USER) == (True, False, True) and stored.collects("anyone") == (False, True, True)
    night = TrackingHours("UTC", (TrackingWindow((), "22:00", "06:00"),))
    replaced = OrganizationPolicy(
        1, AgentPolicy(tracking_hours=NINE_TO_FIVE), {USER: AgentPolicy(tracking_hours=night)}
    )
    assert replaced.effective(USER).tracking_hours == night  # replaced whole, not combined


def test_sharing_the_current_app_merges_like_the_other_switches() -> None:
    hidden = OrganizationPolicy(2, AgentPolicy(share_current_app=False), {USER: AgentPolicy(share_current_app=True)})
    someone = str(uuid.uuid4())
    assert (hidden.effective(USER).share_current_app, hidden.effective(someone).share_current_app) == (True, False)
    # The hot path's lookup agrees with the full merge, for the overridden user and the others.
    assert (hidden.collects(USER)[2], hidden.collects(someone)[2]) == (True, False)
    shown = OrganizationPolicy(3, AgentPolicy(), {USER: AgentPolicy(share_current_app=False)})
    assert (shown.collects(USER)[2], shown.collects(someone)[2]) == (False, True)
    document = document_json(AgentPolicy(share_current_app=False), {USER: AgentPolicy(collect_urls=False)})
    assert document["defaults"] == {"share_current_app": False}
    assert document_from_json(document)[0] == AgentPolicy(share_current_app=False)
    assert policy_of(pb.AgentPolicy(share_current_app=False)).share_current_app is False
    assert policy_of(pb.AgentPolicy()).share_current_app is None  # unset inherits
    assert policy_message(PRODUCT_DEFAULTS).HasField("share_current_app")


def test_the_stored_document_round_trips_and_leaves_unset_fields_out() -> None:
    defaults = AgentPolicy(
        collect_urls=False, redact_rules=(_rule("title", "token=\\w+"),), tracking_hours=NINE_TO_FIVE
    )
    users = {USER: AgentPolicy(idle_sample_seconds=10, collect_titles=False)}
    document = document_json(defaults, users)
    assert document["users"] == [{"user_id": USER, "policy": {"idle_sample_seconds": 10, "collect_titles": False}}]
    assert set(document["defaults"]) == {"collect_urls", "redact_rules", "tracking_hours"}
    assert document_from_json(document) == (defaults, users)
    assert document_from_json({}) == (AgentPolicy(), {})


def test_the_update_event_carries_the_organizations_silence_allowance() -> None:
    assert updated_event("org", OrganizationPolicy(4, AgentPolicy(agent_silence_seconds=600))) == {
        "organizationId": "org",
        "version": 4,
        "agentSilenceSeconds": 600,
    }
    assert updated_event("org", OrganizationPolicy(1))["agentSilenceSeconds"] == 120


def test_protobuf_unset_fields_inherit_and_set_ones_survive_the_round_trip() -> None:
    message = pb.AgentPolicy(
        collect_titles=False,
        idle_threshold_seconds=90,
        drop_rules=[pb.AgentRule(field=pb.AGENT_FIELD_URL, pattern="bank")],
        tracking_hours=pb.TrackingHours(
            timezone="Asia/Tokyo", windows=[pb.TrackingWindow(weekdays=[6, 7], start="10:00", end="14:00")]
        ),
    )
    policy = policy_of(message)
    assert policy == AgentPolicy(
        idle_threshold_seconds=90,
        collect_titles=False,
        drop_rules=(AgentRule("url", "bank"),),
        tracking_hours=TrackingHours("Asia/Tokyo", (TrackingWindow((6, 7), "10:00", "14:00"),)),
    )
    assert policy_message(policy) == message
    assert policy_of(pb.AgentPolicy()) == AgentPolicy()  # false and 0 are values, unset inherits
    assert policy_of(pb.AgentPolicy(collect_urls=False)).collect_urls is False
    unknown = policy_of(pb.AgentPolicy(redact_rules=[pb.AgentRule(pattern="x")]))
    with pytest.raises(InvalidArgument, match=r"^defaults\.redact_rules\.0\.field: must be app, title or url"):
        checked_document(unknown, [])
    effective = policy_message(PRODUCT_DEFAULTS)
    assert all(effective.HasField(name) for name in ("idle_threshold_seconds", "collect_titles", "collect_urls"))
    assert not effective.HasField("tracking_hours")
    users = users_of([pb.UserAgentPolicy(user_id=USER, policy=pb.AgentPolicy(collect_urls=False))])
    assert users == [(USER, AgentPolicy(collect_urls=False))]
    stored = organization_message(OrganizationPolicy(2, AgentPolicy(), dict(users)))
    assert (stored.version, stored.users[0].user_id, stored.HasField("updated_at")) == (2, USER, False)
