"""The member's current app through the whole mesh (real processes): a desktop agent's
streamed batch reaches ingest, whose ACTIVITY_RECORDED names the latest event's app where
the agent policy shares it, and realtime's GetPresence shows it until the session stops."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from tests.realtime.clients import GrpcListener, Recorder
from tests.realtime.conftest import auth, subscribe_request
from tests.support import Mesh, TokenFactory, eventually
from workpulse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from workpulse.realtime.v1 import realtime_pb2, realtime_pb2_grpc
from workpulse.sessions.v1 import sessions_pb2, sessions_pb2_grpc

pytestmark = pytest.mark.e2e


class Agent:
    """A desktop agent's open activity stream (which also keeps its user online)."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self._outgoing: asyncio.Queue[ingest_pb2.StreamActivityRequest | None] = asyncio.Queue()
        self._call = ingest_pb2_grpc.IngestServiceStub(channel).StreamActivity(self._requests(), metadata=auth(token))

    async def _requests(self) -> AsyncIterator[ingest_pb2.StreamActivityRequest]:
        while (request := await self._outgoing.get()) is not None:
            yield request

    async def send(self, session_id: str, apps: list[str]) -> ingest_pb2.StreamActivityResponse:
        """One batch, an event per app, each a second later than the one before."""
        now = datetime.now(UTC)
        events = []
        for n, app in enumerate(apps):
            one = ingest_pb2.ActivityEvent(
                activity_type=ingest_pb2.ACTIVITY_TYPE_ACTIVE, duration_seconds=5, app_name=app
            )
            one.timestamp.FromDatetime(now - timedelta(seconds=len(apps) - n))
            events.append(one)
        batch_id = uuid.uuid4().hex
        await self._outgoing.put(
            ingest_pb2.StreamActivityRequest(batch_id=batch_id, session_id=session_id, events=events)
        )
        ack: ingest_pb2.StreamActivityResponse = await self._call.read()  # type: ignore[assignment]
        assert (ack.batch_id, ack.accepted) == (batch_id, len(apps)), ack
        return ack

    async def close(self) -> None:
        await self._outgoing.put(None)
        while await self._call.read() is not grpc.aio.EOF:
            pass


def _apps_recorded(recorder: Recorder, session_id: str) -> list[object]:
    return [e.data.get("appName") for e in recorder.of_type("ACTIVITY_RECORDED") if e.data["sessionId"] == session_id]


async def test_the_current_app_shows_where_the_policy_shares_it_until_the_session_stops(
    mesh: Mesh, tokens: TokenFactory
) -> None:
    org, manager, shown, hidden = (str(uuid.uuid4()) for _ in range(4))
    boss = tokens.user(org, manager, "manager")
    people = {u: tokens.user(org, u, "employee") for u in (shown, hidden)}
    ingest_ch, realtime_ch = (grpc.aio.insecure_channel(mesh.address(n)) for n in ("ingest", "realtime"))
    sessions_ch = grpc.aio.insecure_channel(mesh.address("sessions"))
    sessions = sessions_pb2_grpc.SessionsServiceStub(sessions_ch)
    realtime = realtime_pb2_grpc.RealtimeServiceStub(realtime_ch)
    watching = await GrpcListener(realtime_ch, boss, subscribe_request()).started()
    agents = {u: Agent(ingest_ch, token) for u, token in people.items()}

    async def start(user: str) -> str:
        reply = await sessions.StartSession(sessions_pb2.StartSessionRequest(), metadata=auth(people[user]))
        return reply.session.id

    async def presence(user: str) -> realtime_pb2.UserPresence | None:
        request = realtime_pb2.GetPresenceRequest(user_ids=[user])
        found = (await realtime.GetPresence(request, metadata=auth(boss), timeout=5)).users
        return found[0] if found else None

    async def showing(user: str, session_id: str, app: str) -> bool:
        found = await presence(user)
        return found is not None and (found.session_id, found.current_app) == (session_id, app)

    # Nothing stored: the product's default shares it; the latest event's app is current.
    first = await start(shown)
    await agents[shown].send(first, ["Mail", "Slack", "Figma"])
    await eventually(lambda: showing(shown, first, "Figma"), what="the streamed batch's latest app in presence")
    assert _apps_recorded(watching.recorder, first) == ["Figma"]
    await sessions.StopSession(sessions_pb2.StopSessionRequest(session_id=first), metadata=auth(people[shown]))
    await eventually(lambda: showing(shown, "", ""), what="the app gone with the stopped session")

    # The organization stops sharing it; one member's override shares it again.
    policy = ingest_pb2.PutOrganizationAgentPolicyRequest(
        defaults=ingest_pb2.AgentPolicy(share_current_app=False),
        users=[ingest_pb2.UserAgentPolicy(user_id=shown, policy=ingest_pb2.AgentPolicy(share_current_app=True))],
    )
    await ingest_pb2_grpc.IngestServiceStub(ingest_ch).PutOrganizationAgentPolicy(policy, metadata=auth(boss))
    sessions_now = {u: await start(u) for u in (shown, hidden)}
    for user, apps in ((shown, ["Terminal"]), (hidden, ["Steam", "Banking"])):
        await agents[user].send(sessions_now[user], apps)
    await eventually(lambda: showing(shown, sessions_now[shown], "Terminal"), what="the override's app")
    await watching.recorder.wait(lambda r: bool(_apps_recorded(r, sessions_now[hidden])), what="hidden's event")
    assert _apps_recorded(watching.recorder, sessions_now[hidden]) == [None]
    await eventually(lambda: showing(hidden, sessions_now[hidden], ""), what="hidden's presence without an app")
    everyone = await realtime.GetPresence(realtime_pb2.GetPresenceRequest(), metadata=auth(boss), timeout=5)
    assert {u.user_id: u.current_app for u in everyone.users} == {shown: "Terminal", hidden: ""}

    for agent in agents.values():
        await agent.close()
    await watching.close()
    for channel in (ingest_ch, realtime_ch, sessions_ch):
        await channel.close()
