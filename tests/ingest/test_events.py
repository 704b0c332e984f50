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
