"""The idle check tells an idle user from a silent agent by each organization's allowance
(its agent policy, read from ingest): silence gets no INACTIVE_ALERT."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.scheduler.domain import DEFAULT_AGENT_SILENCE_SECONDS, IDLE_CHECK, IdleSession
from services.scheduler.mesh import GrpcPeers
from tests.scheduler.conftest import Rig, World
from workpulse.grpc_client import channel
from workpulse.identity import ServiceIdentity, load_private_key
from workpulse.ingest.v1 import ingest_pb2, ingest_pb2_grpc


class Policies(ingest_pb2_grpc.IngestServiceServicer):
    """Ingest's agent policies as the scheduler reads them; unknown organizations fail."""

    def __init__(self) -> None:
        self.allowance: dict[str, int | None] = {}
        self.asked: list[str] = []

    async def GetOrganizationAgentPolicy(
        self, request: ingest_pb2.GetOrganizationAgentPolicyRequest, context: Any
    ) -> ingest_pb2.GetOrganizationAgentPolicyResponse:
        self.asked.append(request.organization_id)
        if request.organization_id not in self.allowance:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "ingest is restarting")
        seconds = self.allowance[request.organization_id]
        defaults = (
            ingest_pb2.AgentPolicy() if seconds is None else ingest_pb2.AgentPolicy(agent_silence_seconds=seconds)
        )
        policy = ingest_pb2.OrganizationAgentPolicy(version=1, defaults=defaults)
        return ingest_pb2.GetOrganizationAgentPolicyResponse(policy=policy)


@pytest.fixture
async def policies() -> AsyncIterator[tuple[Policies, str]]:
    server = grpc.aio.server()
    servicer = Policies()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(0.5)


def test_silence_is_longer_than_the_allowance() -> None:
    session = IdleSession("o", "u", "s", idle_seconds=600, silent_seconds=120)
    assert not session.agent_silent(120) and session.agent_silent(119)


async def test_each_organization_s_allowance_decides_idle_or_silent(
    rig: Rig, world: World, policies: tuple[Policies, str], key_dir: Path
) -> None:
    servicer, address = policies
    now = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
    patient, default, unreadable = [await world.organization() for _ in range(3)]
    servicer.allowance = {patient: 600, default: None}  # `default` stores no allowance
    people = {org: await world.user(org) for org in (patient, default, unreadable)}
    # Each: no active input for 10 minutes, and nothing received for the last 5.
    sessions = {
        org: await world.session(
            person,
            now - timedelta(hours=1),
            last_activity_at=now - timedelta(minutes=5),
            idle_since=now - timedelta(minutes=10),
        )
        for org, person in people.items()
    }
    identity = ServiceIdentity("scheduler", load_private_key(key_dir / "service_private.pem"), "workpulse")
    channels = [channel(a, identity=identity) for a in (rig.reporting_address, rig.reporting_address, address)]
    try:
        peers = GrpcPeers(*channels, identity=identity, zone_ttl=0.0)
        run = await rig.runner(peers).run(IDLE_CHECK, now)
        assert run is not None and run.error is None
        alerted = {
            r[0]
            for r in await world.rows(
                "select session_id::text from scheduler.alerts where organization_id = any(cast(:orgs as uuid[]))",
                orgs=[patient, default, unreadable],
            )
        }
        # Five silent minutes are within 600 s: idle. Over the default 120 s (stored or
        # assumed when ingest cannot answer): the agent is silent, no alert.
        assert alerted == {sessions[patient].id}
        # Other tests' open sessions may be asked about too (the check spans every tenant).
        assert {patient, default, unreadable} <= set(servicer.asked)

        # The policies are remembered for a while: the next minute asks nobody.
        asked = len(servicer.asked)
        assert (await peers.agent_silence([patient, default])) == {patient: 600, default: DEFAULT_AGENT_SILENCE_SECONDS}
        assert len(servicer.asked) == asked
    finally:
        for ch in channels:
            await ch.close()
    for s in sessions.values():
        await world.stop(s, now)
