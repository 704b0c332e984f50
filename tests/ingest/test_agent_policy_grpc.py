"""The agent policy RPCs through a real ingest server and PostgreSQL: who may read and
replace what, versions and their compare-and-set, the event each change writes, and the
version every stream acknowledgement carries."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.ingest.conftest import Stack, User, UserFactory, event, start_ingest
from tests.support import TokenFactory, eventually
from workpulse.db import UnitOfWork, create_engine
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc

Metadata = tuple[tuple[str, str], ...]


def _service(tokens: TokenFactory) -> Metadata:
    return (("authorization", f"Bearer {tokens.service('realtime')}"),)


async def _put(
    stack: Stack,
    md: Metadata,
    defaults: pb.AgentPolicy,
    *,
    expected: int = 0,
    users: list[pb.UserAgentPolicy] | None = None,
) -> pb.OrganizationAgentPolicy:
    request = pb.PutOrganizationAgentPolicyRequest(expected_version=expected, defaults=defaults, users=users or [])
    reply: pb.PutOrganizationAgentPolicyResponse = await stack.ingest.PutOrganizationAgentPolicy(request, metadata=md)
    return reply.policy


async def _stored(stack: Stack, md: Metadata, organization_id: str = "") -> pb.OrganizationAgentPolicy:
    request = pb.GetOrganizationAgentPolicyRequest(organization_id=organization_id)
    reply: pb.GetOrganizationAgentPolicyResponse = await stack.ingest.GetOrganizationAgentPolicy(request, metadata=md)
    return reply.policy


async def _refused(call: object, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    assert refused.value.code() == code, refused.value.details()
    return refused.value.details() or ""


async def test_nothing_stored_is_version_0_and_the_products_defaults(stack: Stack, make_user: UserFactory) -> None:
    admin = make_user("admin")
    employee = make_user("employee", org=admin.org)
    stored = await _stored(stack, admin.md)
    assert (stored.version, stored.HasField("updated_at"), list(stored.users)) == (0, False, [])
    assert not stored.defaults.HasField("idle_threshold_seconds")  # nothing set: everything inherited
    mine = await stack.ingest.GetAgentPolicy(pb.GetAgentPolicyRequest(), metadata=employee.md)
    assert mine.version == 0
    p = mine.policy
    assert (p.idle_threshold_seconds, p.window_sample_seconds, p.idle_sample_seconds) == (300, 1, 5)
    assert (p.collect_titles, p.collect_urls, p.agent_silence_seconds) == (True, True, 120)
    assert p.HasField("collect_titles") and not p.HasField("tracking_hours") and not p.drop_rules
    assert p.HasField("share_current_app") and p.share_current_app


async def test_a_put_stores_a_new_version_and_each_user_gets_their_merge(stack: Stack, make_user: UserFactory) -> None:
    manager = make_user("manager")
    alice, bob = make_user("employee", org=manager.org), make_user("employee", org=manager.org)
    defaults = pb.AgentPolicy(
        idle_threshold_seconds=600,
        collect_urls=False,
        drop_rules=[pb.AgentRule(field=pb.AGENT_FIELD_APP, pattern="bank")],
        share_current_app=False,
    )
    override = pb.AgentPolicy(
        collect_urls=True,
        drop_rules=[pb.AgentRule(field=pb.AGENT_FIELD_TITLE, pattern="private")],
        share_current_app=True,
    )
    first = await _put(stack, manager.md, defaults, users=[pb.UserAgentPolicy(user_id=alice.id, policy=override)])
    assert first.version == 1 and first.HasField("updated_at")
    second = await _put(
        stack, manager.md, defaults, expected=1, users=[pb.UserAgentPolicy(user_id=alice.id, policy=override)]
    )
    assert second.version == 2
    assert await _stored(stack, manager.md) == second
    hers = (await stack.ingest.GetAgentPolicy(pb.GetAgentPolicyRequest(), metadata=alice.md)).policy
    his = (await stack.ingest.GetAgentPolicy(pb.GetAgentPolicyRequest(), metadata=bob.md)).policy
    assert (hers.idle_threshold_seconds, hers.collect_urls, [r.pattern for r in hers.drop_rules]) == (
        600,
        True,
        ["bank", "private"],
    )
    assert (his.idle_threshold_seconds, his.collect_urls, [r.pattern for r in his.drop_rules]) == (600, False, ["bank"])
    assert (hers.share_current_app, his.share_current_app) == (True, False)
    assert second.defaults.HasField("share_current_app") and not second.defaults.HasField("collect_titles")


async def test_employees_may_not_read_or_change_the_organizations_policy(stack: Stack, make_user: UserFactory) -> None:
    employee = make_user("employee")
    await _refused(_stored(stack, employee.md), grpc.StatusCode.PERMISSION_DENIED)
    # Refused before its body is judged: the body is invalid too.
    bad = pb.AgentPolicy(idle_threshold_seconds=1)
    await _refused(_put(stack, employee.md, bad), grpc.StatusCode.PERMISSION_DENIED)
    await _refused(_put(stack, employee.md, pb.AgentPolicy(collect_titles=False)), grpc.StatusCode.PERMISSION_DENIED)
    admin = make_user("admin", org=employee.org)
    assert (await _stored(stack, admin.md)).version == 0  # nothing was stored


async def test_an_admin_sees_and_changes_only_their_own_organization(
    stack: Stack, make_user: UserFactory, tokens: TokenFactory
) -> None:
    ours, theirs = make_user("admin"), make_user("admin")
    await _put(stack, theirs.md, pb.AgentPolicy(idle_threshold_seconds=900, collect_titles=False))
    # The request's organization is for service identities: a user's names nothing.
    assert (await _stored(stack, ours.md, organization_id=theirs.org)).version == 0
    mine = await stack.ingest.GetAgentPolicy(
        pb.GetAgentPolicyRequest(organization_id=theirs.org, user_id=theirs.id), metadata=ours.md
    )
    assert (mine.version, mine.policy.idle_threshold_seconds, mine.policy.collect_titles) == (0, 300, True)
    await _put(stack, ours.md, pb.AgentPolicy(idle_threshold_seconds=60))
    assert (await _stored(stack, theirs.md)).defaults.idle_threshold_seconds == 900
    # A service identity names the organization (and the user).
    service = _service(tokens)
    assert (await _stored(stack, service, organization_id=theirs.org)).defaults.idle_threshold_seconds == 900
    named = await stack.ingest.GetAgentPolicy(
        pb.GetAgentPolicyRequest(organization_id=theirs.org, user_id=str(uuid.uuid4())), metadata=service
    )
    assert (named.version, named.policy.collect_titles) == (1, False)
    await _refused(_stored(stack, service), grpc.StatusCode.INVALID_ARGUMENT)
    await _refused(
        stack.ingest.GetAgentPolicy(pb.GetAgentPolicyRequest(organization_id=theirs.org), metadata=service),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await _refused(_put(stack, service, pb.AgentPolicy()), grpc.StatusCode.PERMISSION_DENIED)


async def test_a_stale_expected_version_is_aborted_and_stores_nothing(stack: Stack, make_user: UserFactory) -> None:
    admin = make_user("admin")
    await _put(stack, admin.md, pb.AgentPolicy(idle_threshold_seconds=100))
    for expected in (2, 7):
        details = await _refused(
            _put(stack, admin.md, pb.AgentPolicy(idle_threshold_seconds=200), expected=expected),
            grpc.StatusCode.ABORTED,
        )
        assert details.startswith("expected_version:")
    stored = await _stored(stack, admin.md)
    assert (stored.version, stored.defaults.idle_threshold_seconds) == (1, 100)
    await _refused(_put(stack, admin.md, pb.AgentPolicy(), expected=-1), grpc.StatusCode.INVALID_ARGUMENT)


async def test_of_two_concurrent_puts_expecting_one_version_exactly_one_wins(
    stack: Stack, make_user: UserFactory
) -> None:
    admin = make_user("admin")
    manager = make_user("manager", org=admin.org)
    await _put(stack, admin.md, pb.AgentPolicy())
    for round_ in range(5):
        version = (await _stored(stack, admin.md)).version
        results = await asyncio.gather(
            _put(stack, admin.md, pb.AgentPolicy(idle_threshold_seconds=100 + round_), expected=version),
            _put(stack, manager.md, pb.AgentPolicy(idle_threshold_seconds=200 + round_), expected=version),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, pb.OrganizationAgentPolicy)]
        lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(won) == 1 and len(lost) == 1, results
        assert lost[0].code() == grpc.StatusCode.ABORTED
        stored = await _stored(stack, admin.md)
        assert (stored.version, stored.defaults) == (version + 1, won[0].defaults)


@pytest.mark.parametrize(
    ("defaults", "users", "field"),
    [
        (pb.AgentPolicy(window_sample_seconds=0), [], "defaults.window_sample_seconds"),
        (
            pb.AgentPolicy(drop_rules=[pb.AgentRule(field=pb.AGENT_FIELD_URL, pattern="[")]),
            [],
            "defaults.drop_rules.0.pattern",
        ),
        (
            pb.AgentPolicy(tracking_hours=pb.TrackingHours(timezone="Nowhere/City")),
            [],
            "defaults.tracking_hours.timezone",
        ),
        (pb.AgentPolicy(), [pb.UserAgentPolicy(user_id="bob")], "users.0.user_id"),
        (
            pb.AgentPolicy(),
            [pb.UserAgentPolicy(user_id=str(uuid.UUID(int=7)), policy=pb.AgentPolicy(agent_silence_seconds=5))],
            "users.0.policy.agent_silence_seconds",
        ),
    ],
)
async def test_an_invalid_policy_is_invalid_argument_naming_the_field(
    stack: Stack, make_user: UserFactory, defaults: pb.AgentPolicy, users: list[pb.UserAgentPolicy], field: str
) -> None:
    admin = make_user("admin")
    details = await _refused(_put(stack, admin.md, defaults, users=users), grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith(f"{field}: "), details
    assert (await _stored(stack, admin.md)).version == 0


async def test_each_change_writes_its_agent_policy_updated_event(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    admin = make_user("admin")
    await _put(stack, admin.md, pb.AgentPolicy(agent_silence_seconds=900))
    await _put(stack, admin.md, pb.AgentPolicy(idle_threshold_seconds=60), expected=1)
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select topic, payload from ingest.outbox where organization_id = :org "
                "and event_type = 'AGENT_POLICY_UPDATED' order by id"
            ),
            {"org": admin.org},
        )
        found = [(topic, payload if isinstance(payload, dict) else json.loads(payload)) for topic, payload in rows]
    assert found == [
        ("events", {"organizationId": admin.org, "version": 1, "agentSilenceSeconds": 900}),
        ("events", {"organizationId": admin.org, "version": 2, "agentSilenceSeconds": 120}),  # the product's again
    ]


async def test_policies_are_held_apart_by_row_level_security(
    stack: Stack, make_user: UserFactory, database_url: str
) -> None:
    ours, theirs = make_user("admin"), make_user("admin")
    for admin in (ours, theirs):
        await _put(stack, admin.md, pb.AgentPolicy(collect_titles=False))
    uow = UnitOfWork(create_engine(database_url, pool_size=1))
    try:
        async with uow.tenant(ours.org) as conn:
            seen = (await conn.execute(text("select organization_id::text from ingest.agent_policies"))).scalars()
            assert list(seen) == [ours.org]
        async with uow.unscoped() as conn:
            assert (await conn.execute(text("select count(*) from ingest.agent_policies"))).scalar_one() == 0
    finally:
        await uow.engine.dispose()


async def _acks(
    ingest: ingest_pb2_grpc.IngestServiceAsyncStub, user: User, session_id: str, count: int
) -> list[pb.StreamActivityResponse]:
    now = datetime.now(UTC)

    async def batches() -> AsyncIterator[pb.StreamActivityRequest]:
        for n in range(count):
            cid = uuid.uuid4().hex
            yield pb.StreamActivityRequest(
                batch_id=f"b{n}", session_id=session_id, events=[event(1, at=now, client_id=cid)]
            )

    return [a async for a in ingest.StreamActivity(batches(), metadata=user.md)]


async def test_every_ack_carries_the_policy_version_and_a_change_within_the_ttl(
    stack: Stack, make_user: UserFactory
) -> None:
    admin = make_user("admin")
    agent = make_user("employee", org=admin.org)
    session = await stack.start(agent)
    assert {a.policy_version for a in await _acks(stack.ingest, agent, session.id, 2)} == {0}
    await _put(stack, admin.md, pb.AgentPolicy(idle_threshold_seconds=90))
    # The replica that stored the change knows it at once.
    assert {a.policy_version for a in await _acks(stack.ingest, agent, session.id, 2)} == {1}
    # A failed batch carries it too (an unknown session).
    failed = await _acks(stack.ingest, agent, str(uuid.uuid4()), 1)
    assert (failed[0].status_code, failed[0].policy_version) == (grpc.StatusCode.NOT_FOUND.value[0], 1)
    # Another replica learns it within its TTL.
    other, stop = await start_ingest(stack.sessions_address, ingest_policy_cache_seconds=0.5)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{other.port}") as channel:
            replica: ingest_pb2_grpc.IngestServiceAsyncStub = ingest_pb2_grpc.IngestServiceStub(channel)  # type: ignore[assignment]
            assert (await _acks(replica, agent, session.id, 1))[0].policy_version == 1
            await _put(stack, admin.md, pb.AgentPolicy(idle_threshold_seconds=95), expected=1)

            async def replica_knows() -> bool:
                acks = await _acks(replica, agent, session.id, 1)
                return acks[0].policy_version == 2

            await eventually(replica_knows, timeout=5, interval=0.1, what="the new version in the replica's acks")
    finally:
        await stop()
