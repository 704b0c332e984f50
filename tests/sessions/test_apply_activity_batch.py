"""ApplyActivityBatch: many hand-offs of several organizations in one call, each counted
once per key under its own tenant; an unknown session costs nothing and claims nothing."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.sessions.conftest import Server, User, UserFactory, apply_request, invalid_argument, start_session
from workpulse.sessions.v1 import sessions_pb2 as pb

Metadata = tuple[tuple[str, str], ...]


async def _totals(server: Server, user: User, session_id: str) -> tuple[int, int]:
    s = (await server.stub.GetSession(pb.GetSessionRequest(session_id=session_id), metadata=user.md)).session
    return s.total_active_seconds, s.total_idle_seconds


async def _claimed(owner: AsyncEngine, key: str) -> int:
    async with owner.connect() as conn:
        found = await conn.execute(
            text("select count(*) from sessions.applied_batches where idempotency_key = :key"), {"key": key}
        )
        return int(found.scalar_one())


async def test_a_batch_across_organizations_counts_each_item_once_under_its_own_tenant(
    sessions_server: Server, make_user: UserFactory, service_md: Metadata, owner_engine: AsyncEngine
) -> None:
    ada, bob = make_user(), make_user()  # two organizations
    a, b = await start_session(sessions_server, ada), await start_session(sessions_server, bob)
    ghost = f"ghost-{uuid.uuid4().hex}"
    items = [
        apply_request(bob, b.id, "b-1", active=30),
        apply_request(ada, a.id, "a-1", active=60),
        apply_request(ada, str(uuid.uuid4()), ghost),  # no such session
        apply_request(ada, a.id, "a-2", active=0, idle=15),
        apply_request(bob, a.id, "cross", active=999),  # Ada's session named under Bob's organization
        apply_request(ada, a.id, "a-1", active=60),  # the same key again in one batch
    ]
    reply = await sessions_server.stub.ApplyActivityBatch(
        pb.ApplyActivityBatchRequest(items=items), metadata=service_md
    )
    results = list(reply.results)
    assert [(r.not_found, r.duplicate) for r in results] == [
        (False, False),
        (False, False),
        (True, False),
        (False, False),
        (True, False),
        (False, True),
    ]
    assert [r.session.id for r in results] == [b.id, a.id, "", a.id, "", a.id]
    assert await _totals(sessions_server, ada, a.id) == (60, 15)
    assert await _totals(sessions_server, bob, b.id) == (30, 0)
    # Items that found no session counted nothing and left no key behind.
    assert await _claimed(owner_engine, ghost) == 0
    assert await _claimed(owner_engine, "cross") == 0

    again = await sessions_server.stub.ApplyActivityBatch(
        pb.ApplyActivityBatchRequest(items=items), metadata=service_md
    )
    assert [r.duplicate for r in again.results if not r.not_found] == [True, True, True, True]
    assert await _totals(sessions_server, ada, a.id) == (60, 15)


async def test_racing_batches_over_the_same_sessions_all_succeed_with_exact_totals(
    sessions_server: Server, make_user: UserFactory, service_md: Metadata
) -> None:
    users = [make_user() for _ in range(4)]
    sessions = [await start_session(sessions_server, u) for u in users]

    def batch(n: int) -> pb.ApplyActivityBatchRequest:
        # Every batch names every session, in a different order each time.
        pairs = list(zip(users, sessions, strict=True))
        pairs = pairs[n % 4 :] + pairs[: n % 4]
        return pb.ApplyActivityBatchRequest(items=[apply_request(u, s.id, f"{s.id}-{n}", active=10) for u, s in pairs])

    replies = await asyncio.gather(
        *(sessions_server.stub.ApplyActivityBatch(batch(n), metadata=service_md) for n in range(40))
    )
    assert all(not r.duplicate and not r.not_found for reply in replies for r in reply.results)
    for user, session in zip(users, sessions, strict=True):
        assert await _totals(sessions_server, user, session.id) == (400, 0)


async def test_a_batch_is_for_services_and_validated_item_by_item(
    sessions_server: Server, make_user: UserFactory, service_md: Metadata
) -> None:
    ada = make_user("admin")
    a = await start_session(sessions_server, ada)
    good = apply_request(ada, a.id, "k")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sessions_server.stub.ApplyActivityBatch(pb.ApplyActivityBatchRequest(items=[good]), metadata=ada.md)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    bad = apply_request(ada, a.id, "k2", active=-1)
    await invalid_argument(
        sessions_server.stub.ApplyActivityBatch(pb.ApplyActivityBatchRequest(items=[good, bad]), metadata=service_md),
        "items.1.active_seconds",
    )
    await invalid_argument(
        sessions_server.stub.ApplyActivityBatch(
            pb.ApplyActivityBatchRequest(items=[apply_request(ada, a.id, f"k-{n}") for n in range(1001)]),
            metadata=service_md,
        ),
        "items",
    )
    assert await _totals(sessions_server, ada, a.id) == (0, 0)  # nothing of a refused batch counted
