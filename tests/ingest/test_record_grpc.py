"""RecordActivity and RecordActivityBatch through a real server: totals, duplicates, rejections."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.ingest.conftest import Stack, UserFactory, event, invariant_violations
from workpulse.ingest.v1 import ingest_pb2 as pb


async def test_hundred_concurrent_single_events_all_count(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    replies = await asyncio.gather(
        *(
            stack.ingest.RecordActivity(
                pb.RecordActivityRequest(session_id=session.id, event=event(60)), metadata=user.md
            )
            for _ in range(100)
        )
    )
    assert all(r.status == pb.EVENT_STATUS_ACCEPTED for r in replies)
    assert max(r.session.total_active_seconds for r in replies) == 6000
    assert await invariant_violations(owner_engine, [session.id]) == []
