"""Start, stop, read and list work sessions over real gRPC against real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.sessions.conftest import Server, UserFactory, invalid_argument
from workpulse.sessions.v1 import sessions_pb2 as pb


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code()


async def test_start_then_stop_sets_end_time_once(sessions_server: Server, make_user: UserFactory) -> None:
    user = make_user()
    started = (await sessions_server.stub.StartSession(pb.StartSessionRequest(), metadata=user.md)).session
    assert started.status == "active" and started.user_id == user.id and started.organization_id == user.org
    assert not started.HasField("end_time") and started.version == 1 and started.project_id == ""

    stopped = (
        await sessions_server.stub.StopSession(pb.StopSessionRequest(session_id=started.id), metadata=user.md)
    ).session
    assert stopped.status == "stopped" and stopped.HasField("end_time") and stopped.version == 2
    assert stopped.end_time.ToDatetime() >= stopped.start_time.ToDatetime()

    again = sessions_server.stub.StopSession(pb.StopSessionRequest(session_id=started.id), metadata=user.md)
    assert await _code(again) == grpc.StatusCode.FAILED_PRECONDITION
    get = pb.GetSessionRequest(session_id=started.id)
    fetched = (await sessions_server.stub.GetSession(get, metadata=user.md)).session
    assert fetched.end_time == stopped.end_time


async def test_second_start_names_the_active_session(sessions_server: Server, make_user: UserFactory) -> None:
    user = make_user()
    first = (await sessions_server.stub.StartSession(pb.StartSessionRequest(), metadata=user.md)).session
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sessions_server.stub.StartSession(pb.StartSessionRequest(), metadata=user.md)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first.id in (info.value.details() or "")


async def test_concurrent_starts_leave_exactly_one_active(
    sessions_server: Server, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    results = await asyncio.gather(
        *(sessions_server.stub.StartSession(pb.StartSessionRequest(), metadata=user.md) for _ in range(20)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, pb.StartSessionResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 19
    assert {e.code() for e in losers} == {grpc.StatusCode.ALREADY_EXISTS}
    assert all(winners[0].session.id in (e.details() or "") for e in losers)
    async with owner_engine.connect() as conn:
        active = await conn.scalar(
            text("select count(*) from sessions.work_sessions where user_id = :u and status = 'active'"),
            {"u": user.id},
        )
    assert active == 1


async def test_stop_with_wrong_version_is_aborted_and_changes_nothing(
    sessions_server: Server, make_user: UserFactory
) -> None:
    user = make_user()
    session = (await sessions_server.stub.StartSession(pb.StartSessionRequest(), metadata=user.md)).session
    wrong = pb.StopSessionRequest(session_id=session.id, expected_version=session.version + 5)
    assert await _code(sessions_server.stub.StopSession(wrong, metadata=user.md)) == grpc.StatusCode.ABORTED
    get = pb.GetSessionRequest(session_id=session.id)
    still = (await sessions_server.stub.GetSession(get, metadata=user.md)).session
    assert still.status == "active" and still.version == session.version

    right = pb.StopSessionRequest(session_id=session.id, expected_version=session.version)
    stopped = (await sessions_server.stub.StopSession(right, metadata=user.md)).session
    assert stopped.status == "stopped" and stopped.version == session.version + 1


async def test_employees_see_only_their_own_sessions(sessions_server: Server, make_user: UserFactory) -> None:
    alice = make_user()
    bob = make_user(org=alice.org)
    manager = make_user("manager", org=alice.org)
    stranger_admin = make_user("admin")
    s = (await sessions_server.stub.StartSession(pb.StartSessionRequest(), metadata=alice.md)).session
    await sessions_server.stub.StartSession(pb.StartSessionRequest(), metadata=bob.md)
    get = pb.GetSessionRequest(session_id=s.id)

    assert await _code(sessions_server.stub.GetSession(get, metadata=bob.md)) == grpc.StatusCode.NOT_FOUND
    assert await _code(sessions_server.stub.GetSession(get, metadata=stranger_admin.md)) == grpc.StatusCode.NOT_FOUND
    stop = pb.StopSessionRequest(session_id=s.id)
    assert await _code(sessions_server.stub.StopSession(stop, metadata=bob.md)) == grpc.StatusCode.NOT_FOUND
    assert await _code(sessions_server.stub.StopSession(stop, metadata=stranger_admin.md)) == grpc.StatusCode.NOT_FOUND
    assert (await sessions_server.stub.GetSession(get, metadata=manager.md)).session.id == s.id

    own = (await sessions_server.stub.ListActiveSessions(pb.ListActiveSessionsRequest(), metadata=alice.md)).sessions
    assert [x.user_id for x in own] == [alice.id]
    org = (await sessions_server.stub.ListActiveSessions(pb.ListActiveSessionsRequest(), metadata=manager.md)).sessions
    assert {x.user_id for x in org} == {alice.id, bob.id}
    other = await sessions_server.stub.ListActiveSessions(pb.ListActiveSessionsRequest(), metadata=stranger_admin.md)
    assert list(other.sessions) == []

    # A manager of the organization may stop an employee's session.
    stopped = (await sessions_server.stub.StopSession(stop, metadata=manager.md)).session
    assert stopped.status == "stopped" and stopped.user_id == alice.id


async def test_service_identity_reads_with_organization(
    sessions_server: Server, make_user: UserFactory, service_md: tuple[tuple[str, str], ...]
) -> None:
    user = make_user()
    s = (await sessions_server.stub.StartSession(pb.StartSessionRequest(), metadata=user.md)).session
    got = await sessions_server.stub.GetSession(
        pb.GetSessionRequest(session_id=s.id, organization_id=user.org), metadata=service_md
    )
    assert got.session.id == s.id
    wrong_org = pb.GetSessionRequest(session_id=s.id, organization_id=str(uuid.uuid4()))
    assert await _code(sessions_server.stub.GetSession(wrong_org, metadata=service_md)) == grpc.StatusCode.NOT_FOUND
    no_org = pb.GetSessionRequest(session_id=s.id)
    assert await _code(sessions_server.stub.GetSession(no_org, metadata=service_md)) == grpc.StatusCode.INVALID_ARGUMENT
    # A service identity cannot start sessions (it is nobody's user).
    start = sessions_server.stub.StartSession(pb.StartSessionRequest(), metadata=service_md)
    assert await _code(start) == grpc.StatusCode.PERMISSION_DENIED


async def test_bad_input_is_invalid_argument_not_internal(sessions_server: Server, make_user: UserFactory) -> None:
    user = make_user()
    stub = sessions_server.stub
    cases = [
        (stub.GetSession(pb.GetSessionRequest(session_id="not-a-uuid"), metadata=user.md), "session_id"),
        (stub.StopSession(pb.StopSessionRequest(session_id="1; drop table x"), metadata=user.md), "session_id"),
        (stub.StartSession(pb.StartSessionRequest(project_id="nope"), metadata=user.md), "project_id"),
        (stub.ListSessions(pb.ListSessionsRequest(page_size=1000), metadata=user.md), "page_size"),
        (stub.ListSessions(pb.ListSessionsRequest(page_token="garbage!"), metadata=user.md), "page_token"),
        (stub.ListSessions(pb.ListSessionsRequest(status="paused"), metadata=user.md), "status"),
        (stub.ListSessions(pb.ListSessionsRequest(user_id="x"), metadata=user.md), "user_id"),
    ]
    for call, field in cases:
        await invalid_argument(call, field)
    assert list((await stub.ListActiveSessions(pb.ListActiveSessionsRequest(), metadata=user.md)).sessions) == []
    unknown_project = stub.StartSession(pb.StartSessionRequest(project_id=str(uuid.uuid4())), metadata=user.md)
    assert await _code(unknown_project) == grpc.StatusCode.NOT_FOUND
    missing = stub.GetSession(pb.GetSessionRequest(session_id=str(uuid.uuid4())), metadata=user.md)
    assert await _code(missing) == grpc.StatusCode.NOT_FOUND
    assert await _code(stub.ListActiveSessions(pb.ListActiveSessionsRequest())) == grpc.StatusCode.UNAUTHENTICATED


async def test_history_pages_newest_first_with_date_filters(
    sessions_server: Server, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    other = make_user(org=user.org)
    # Seven stopped sessions of this user a day apart, plus one of another user.
    async with owner_engine.begin() as conn:
        for day, who in [*((d, user.id) for d in range(1, 8)), (3, other.id)]:
            await conn.execute(
                text(
                    "insert into sessions.work_sessions (organization_id, user_id, start_time, end_time, status) "
                    "values (:org, :u, timestamptz '2026-01-01T09:00:00Z' + make_interval(days => :d), "
                    "timestamptz '2026-01-01T17:00:00Z' + make_interval(days => :d), 'stopped')"
                ),
                {"org": user.org, "u": who, "d": day},
            )
    seen: list[str] = []
    token = ""
    while True:
        page = await sessions_server.stub.ListSessions(
            pb.ListSessionsRequest(page_size=3, page_token=token), metadata=user.md
        )
        seen += [s.start_time.ToJsonString() for s in page.sessions]
        assert all(s.user_id == user.id for s in page.sessions)
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == 7

    since, before = Timestamp(), Timestamp()
    since.FromJsonString("2026-01-03T00:00:00Z")
    before.FromJsonString("2026-01-06T00:00:00Z")
    window = await sessions_server.stub.ListSessions(
        pb.ListSessionsRequest(started_from=since, started_before=before), metadata=user.md
    )
    assert [s.start_time.ToJsonString() for s in window.sessions] == [
        "2026-01-05T09:00:00Z",
        "2026-01-04T09:00:00Z",
        "2026-01-03T09:00:00Z",
    ]
    forbidden = sessions_server.stub.ListSessions(pb.ListSessionsRequest(user_id=other.id), metadata=user.md)
    assert await _code(forbidden) == grpc.StatusCode.PERMISSION_DENIED
    manager = make_user("manager", org=user.org)
    everyone = await sessions_server.stub.ListSessions(
        pb.ListSessionsRequest(started_from=since, started_before=before), metadata=manager.md
    )
    assert len(everyone.sessions) == 4
    theirs = await sessions_server.stub.ListSessions(pb.ListSessionsRequest(user_id=other.id), metadata=manager.md)
    assert [s.user_id for s in theirs.sessions] == [other.id]
