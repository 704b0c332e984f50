"""Each write publishes one ACTIVITY_RECORDED event per session to the events stream,
after it committed (through the outbox)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from tests.ingest.conftest import Stack, UserFactory, event
from tests.support import eventually
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.redisconn import Keys, events_stream


async def test_a_batch_publishes_activity_recorded_with_its_totals(
    stack: Stack, make_user: UserFactory, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    user = make_user()
    session = await stack.start(user)
    now = datetime.now(UTC)
    events = [event(60, at=now - timedelta(seconds=2)), event(15, kind=pb.ACTIVITY_TYPE_IDLE, at=now)]
    await stack.ingest.RecordActivityBatch(
        pb.RecordActivityBatchRequest(session_id=session.id, events=events), metadata=user.md
    )
    stream = events_stream(Keys(redis_prefix))

    async def published() -> list[dict[str, Any]]:
        entries = await redis_client.xrange(stream)
        found = []
        for _, fields in entries:
            data = json.loads(fields["data"])
            if fields["type"] == "ACTIVITY_RECORDED" and data["sessionId"] == session.id:
                found.append({"org": fields["org"], "service": fields["service"], **data})
        return found

    found = await eventually(published, timeout=5, what="ACTIVITY_RECORDED on the events stream")
    assert len(found) == 1
    assert found[0]["org"] == user.org and found[0]["service"] == "ingest"
    assert (found[0]["userId"], found[0]["eventCount"]) == (user.id, 2)
    assert (found[0]["activeSeconds"], found[0]["idleSeconds"]) == (60, 15)


async def _recorded(client: aioredis.Redis, stream: str, session_id: str) -> list[dict[str, Any]]:
    entries = await client.xrange(stream)
    found = [json.loads(fields["data"]) for _, fields in entries if fields["type"] == "ACTIVITY_RECORDED"]
    return [data for data in found if data["sessionId"] == session_id]


async def test_activity_recorded_names_the_latest_events_app_where_the_policy_shares_it(
    stack: Stack, make_user: UserFactory, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    admin = make_user("admin")
    shown, hidden = make_user(org=admin.org), make_user(org=admin.org)
    put = pb.PutOrganizationAgentPolicyRequest(
        defaults=pb.AgentPolicy(share_current_app=False),
        users=[pb.UserAgentPolicy(user_id=shown.id, policy=pb.AgentPolicy(share_current_app=True))],
    )
    await stack.ingest.PutOrganizationAgentPolicy(put, metadata=admin.md)
    stream, now = events_stream(Keys(redis_prefix)), datetime.now(UTC)
    for user in (shown, hidden):
        session = await stack.start(user)
        # The latest by timestamp, not the last sent.
        events = [
            event(5, at=now - timedelta(seconds=1), app="Slack"),
            event(5, at=now - timedelta(seconds=3), app="Mail"),
        ]
        batch = pb.RecordActivityBatchRequest(session_id=session.id, events=events)
        await stack.ingest.RecordActivityBatch(batch, metadata=user.md)
        (found,) = await eventually(
            lambda sid=session.id: _recorded(redis_client, stream, sid), timeout=5, what="recorded"
        )
        assert found["appName"] == ("Slack" if user is shown else None)
