"""The audience rule, stream ids and activity folding: plain rules, no I/O."""

from __future__ import annotations

import json
import uuid

import pytest

from services.realtime.domain import (
    ActivityState,
    AgentAllowance,
    Event,
    Viewer,
    allowance_of,
    next_activity,
    parse_stream_id,
)
from services.realtime.hub import EventHub, Subscription


def _event(org: str, user: str | None, kind: str = "SESSION_UPDATE", n: int = 1, **data: object) -> Event:
    payload = {"userId": user, **data} if user else dict(data)
    return Event.from_entry(f"{n}-0", {"type": kind, "org": org, "ts": f"t{n}", "data": json.dumps(payload)})


def test_stream_ids_order_numerically() -> None:
    assert parse_stream_id("10-0") > parse_stream_id("9-5")
    assert parse_stream_id("1700000000000-12") > parse_stream_id("1700000000000-2")
    assert parse_stream_id("5") == (5, 0)
    for bad in ("", "-1", "a-b", "1-", "1-2-3"):
        with pytest.raises(ValueError):
            parse_stream_id(bad)


def test_audience_rule() -> None:
    org, other = str(uuid.uuid4()), str(uuid.uuid4())
    me, colleague = str(uuid.uuid4()), str(uuid.uuid4())
    employee, manager = Viewer(me, org, False), Viewer(str(uuid.uuid4()), org, True)
    mine, theirs, nobodys = _event(org, me), _event(org, colleague), _event(org, None)
    assert employee.may_see(mine) and not employee.may_see(theirs) and not employee.may_see(nobodys)
    assert manager.may_see(mine) and manager.may_see(theirs) and manager.may_see(nobodys)
    assert not manager.may_see(_event(other, me)) and not employee.may_see(_event(other, me))


def test_hub_delivers_exactly_what_the_rule_allows() -> None:
    orgs = [str(uuid.uuid4()) for _ in range(2)]
    users = {org: [str(uuid.uuid4()) for _ in range(3)] for org in orgs}
    hub = EventHub(stream=None, queue_capacity=100)  # type: ignore[arg-type]
    viewers = [Viewer(u, org, i == 0) for org in orgs for i, u in enumerate(users[org])]
    subs: list[Subscription] = [hub.subscribe(v) for v in viewers]
    events = [_event(org, u, n=i) for i, (org, u) in enumerate((o, u) for o in orgs for u in [*users[o], None])]
    for e in events:
        hub.deliver(e)
    for sub in subs:
        assert sub.take() == [e for e in events if sub.viewer.may_see(e)]
    hub.unsubscribe(subs[0])
    assert hub.subscribers == len(subs) - 1


def test_a_full_queue_overflows_instead_of_growing() -> None:
    org, user = str(uuid.uuid4()), str(uuid.uuid4())
    hub = EventHub(stream=None, queue_capacity=3)  # type: ignore[arg-type]
    sub = hub.subscribe(Viewer(user, org, True))
    for n in range(10):
        hub.deliver(_event(org, user, n=n))
    assert sub.overflowed and sub.take() == []


def test_activity_follows_session_updates_and_alerts() -> None:
    org, user, session = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())

    def update(n: int, active: int, idle: int, status: str = "active") -> Event:
        return _event(
            org, user, n=n, sessionId=session, status=status, total_active_seconds=active, total_idle_seconds=idle
        )

    started = next_activity(ActivityState(), update(1, 0, 0))
    assert started == ActivityState(session, True, None, 0, 0, contact_ms=1)  # the start is contact
    worked = next_activity(started, update(2, 60, 0))
    assert worked is not None and worked.active and worked.last_activity_at == "t2"
    idled = next_activity(worked, update(3, 60, 30))
    assert idled is not None and not idled.active and idled.last_activity_at == "t3"
    back = next_activity(idled, update(4, 90, 30))
    assert back is not None and back.active
    alerted = next_activity(back, _event(org, user, "INACTIVE_ALERT", 5, sessionId=session, idleMinutes=5))
    assert alerted is not None and not alerted.active and alerted.session_id == session
    assert next_activity(alerted, update(6, 90, 30, status="stopped")) == ActivityState()
    assert next_activity(alerted, _event(org, user, "OVERTIME_ALERT", 7)) is None
    assert ActivityState.from_json(back.to_json()) == back


def test_contact_is_activity_arriving_for_the_open_session() -> None:
    """Agent contact moves with activity received for the open session (ingest's
    ACTIVITY_RECORDED, growing totals), never with news that carries none."""
    org, user, session, old = (str(uuid.uuid4()) for _ in range(4))

    def update(n: int, active: int, idle: int, status: str = "active", sid: str = session) -> Event:
        return _event(
            org, user, n=n, sessionId=sid, status=status, total_active_seconds=active, total_idle_seconds=idle
        )

    # A start is announced as SESSION_STARTED alone (SESSION_UPDATE's payload): contact.
    started = next_activity(ActivityState(), _event(org, user, "SESSION_STARTED", 1000, **update(1, 0, 0).data()))
    assert started is not None and started.session_id == session and started.contact_ms == 1000
    recorded = next_activity(started, _event(org, user, "ACTIVITY_RECORDED", 2000, sessionId=session, eventCount=1))
    assert recorded is not None and recorded.contact_ms == 2000 and recorded.total_active_seconds == 0
    assert recorded.contact_at == "1970-01-01T00:00:02+00:00"
    # Another session's upload, an alert, an edit without new totals: no contact.
    assert next_activity(recorded, _event(org, user, "ACTIVITY_RECORDED", 3000, sessionId=old)) is None
    alerted = next_activity(recorded, _event(org, user, "INACTIVE_ALERT", 4000, sessionId=session))
    assert alerted is not None and alerted.contact_ms == 2000
    edited = next_activity(recorded, update(5000, 0, 0))
    assert edited is not None and edited.contact_ms == 2000
    idled = next_activity(edited, update(6000, 0, 30))
    assert idled is not None and idled.contact_ms == 6000 and not idled.active
    assert next_activity(idled, update(7000, 0, 30, status="stopped")) == ActivityState()
    assert next_activity(ActivityState(), _event(org, user, "ACTIVITY_RECORDED", 8000, sessionId=session)) is None


@pytest.mark.parametrize(
    ("org", "data", "expected"),
    [
        ("o", {"organizationId": "o", "version": 3, "agentSilenceSeconds": 45}, AgentAllowance("o", 3, 45)),
        ("o", {"version": 4, "agentSilenceSeconds": None}, AgentAllowance("o", 4, None)),  # the default applies
        ("o", {"organizationId": "other", "version": 3, "agentSilenceSeconds": 45}, None),  # not this tenant's
        ("o", {"organizationId": "o", "version": 0, "agentSilenceSeconds": 45}, None),
        ("o", {"organizationId": "o", "version": 3, "agentSilenceSeconds": 0}, None),
        ("o", {"organizationId": "o", "version": 3, "agentSilenceSeconds": "45"}, None),
        ("o", {"organizationId": "o", "version": True, "agentSilenceSeconds": 45}, None),
        ("", {"organizationId": "o", "version": 3, "agentSilenceSeconds": 45}, None),
    ],
)
def test_an_agent_policy_event_gives_its_own_organization_s_allowance(
    org: str, data: dict[str, object], expected: AgentAllowance | None
) -> None:
    event = Event.from_entry("1-0", {"type": "AGENT_POLICY_UPDATED", "org": org, "ts": "t", "data": json.dumps(data)})
    assert allowance_of(event) == expected


def test_a_stop_clears_its_own_session_only() -> None:
    """Sessions announces a stop as SESSION_UPDATE "stopped": the user is no longer active
    in it. Late activity of an older, stopped session (an agent syncing after the stop)
    says nothing about the session the user works in now."""
    org, user = str(uuid.uuid4()), str(uuid.uuid4())
    old, current = str(uuid.uuid4()), str(uuid.uuid4())

    def update(n: int, session: str, status: str, active: int) -> Event:
        return _event(
            org, user, n=n, sessionId=session, status=status, total_active_seconds=active, total_idle_seconds=0
        )

    working = next_activity(ActivityState(), update(1, current, "active", 60))
    assert working is not None and working.active and working.session_id == current
    assert next_activity(working, update(2, old, "stopped", 300)) is None
    assert next_activity(working, update(3, current, "stopped", 60)) == ActivityState()
    assert next_activity(ActivityState(), update(4, old, "stopped", 300)) == ActivityState()


def test_the_current_app_is_the_open_sessions_latest_recorded_and_goes_with_it() -> None:
    """ACTIVITY_RECORDED of the open session sets the current app (null: cleared, the
    policy does not share it); other news keeps it; a stop or a new session clears it."""
    org, user, session, newer, old = (str(uuid.uuid4()) for _ in range(5))

    def update(n: int, sid: str, active: int, status: str = "active") -> Event:
        return _event(org, user, n=n, sessionId=sid, status=status, total_active_seconds=active, total_idle_seconds=0)

    def recorded(state: ActivityState | None, n: int, sid: str, app: object) -> ActivityState | None:
        assert state is not None
        return next_activity(state, _event(org, user, "ACTIVITY_RECORDED", n, sessionId=sid, appName=app))

    working = recorded(next_activity(ActivityState(), update(1, session, 0)), 2, session, "Editor")
    assert working is not None and working.current_app == "Editor"
    assert recorded(working, 3, old, "Steam") is None  # another session's upload
    grown = next_activity(working, update(4, session, 60))
    alerted = next_activity(working, _event(org, user, "INACTIVE_ALERT", 5, sessionId=session))
    assert grown is not None and alerted is not None and (grown.current_app, alerted.current_app) == ("Editor",) * 2
    hidden = recorded(grown, 6, session, None)
    assert hidden is not None and hidden.current_app is None and hidden.contact_ms == 6
    assert ActivityState.from_json(working.to_json()) == working
    after_stop = next_activity(working, update(7, session, 60, status="stopped"))
    assert after_stop == ActivityState()
    moved = next_activity(working, update(8, newer, 0))
    assert moved is not None and moved.session_id == newer and moved.current_app is None


def test_a_state_stored_before_the_current_app_reads_without_one() -> None:
    stored = {"sessionId": "s", "active": True, "lastActivityAt": None, "totalActive": 5, "totalIdle": 0}
    assert ActivityState.from_json(json.dumps({**stored, "contactMs": 7})) == ActivityState("s", True, None, 5, 0, 7)
    assert ActivityState.from_json(json.dumps({**stored, "currentApp": ""})).current_app is None
