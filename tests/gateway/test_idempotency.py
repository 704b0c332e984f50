"""Issue 11: ``Idempotency-Key`` on every mutating route, through the real gateway and
services: a retry with the same key and body replays the first answer and stores
nothing more; the same key with another body is a 422; keys are per caller."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Mesh, TokenFactory, start_mesh

EVENT = {"activityType": "active", "durationSeconds": 7, "appName": "Editor"}


@pytest.fixture(scope="module")
def keyed_mesh(mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(mesh_env, Path(tmp_path_factory.mktemp("idempotency")), only=("sessions", "ingest", "gateway"))
    yield running
    running.stop()


@pytest.fixture
async def http(keyed_mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=keyed_mesh.gateway_url, timeout=30) as client:
        yield client


async def _session(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    started = await http.post("/sessions/start", json={}, headers=headers)
    assert started.status_code == 201, started.text
    sid: str = started.json()["id"]
    return sid


async def _events(owner_engine: AsyncEngine, sid: str) -> int:
    async with owner_engine.connect() as conn:
        found = await conn.execute(
            text("select count(*) from ingest.activity_logs where session_id = cast(:s as uuid)"), {"s": sid}
        )
        return int(found.scalar_one())


async def test_a_retry_with_the_same_key_replays_the_first_answer(
    http: httpx.AsyncClient, tokens: TokenFactory, owner_engine: AsyncEngine
) -> None:
    headers = {"authorization": f"Bearer {tokens.user(role='employee', ttl=3600)}"}
    sid = await _session(http, headers)
    keyed = {**headers, "idempotency-key": f"k-{uuid.uuid4()}"}
    first = await http.post(f"/sessions/{sid}/activity", json=EVENT, headers=keyed)
    again = await http.post(f"/sessions/{sid}/activity", json=EVENT, headers=keyed)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert await _events(owner_engine, sid) == 1
    # Without a key the same body is a new event (the original's semantics).
    plain = await http.post(f"/sessions/{sid}/activity", json=EVENT, headers=headers)
    assert plain.status_code == 201 and plain.json()["session"]["total_active_seconds"] == 14
    assert await _events(owner_engine, sid) == 2


async def test_the_same_key_with_another_body_is_a_422(http: httpx.AsyncClient, tokens: TokenFactory) -> None:
    headers = {"authorization": f"Bearer {tokens.user(role='employee', ttl=3600)}"}
    sid = await _session(http, headers)
    keyed = {**headers, "idempotency-key": "same-key"}
    assert (await http.post(f"/sessions/{sid}/activity", json=EVENT, headers=keyed)).status_code == 201
    other = await http.post(f"/sessions/{sid}/activity", json={**EVENT, "durationSeconds": 8}, headers=keyed)
    assert other.status_code == 422, other.text
    assert set(other.json()) == {"statusCode", "message", "timestamp", "path"}
    assert "Idempotency-Key" in other.json()["message"]


async def test_keys_belong_to_their_caller(http: httpx.AsyncClient, tokens: TokenFactory) -> None:
    """Two users choosing the same key do not see each other's answers."""
    key = f"shared-{uuid.uuid4()}"
    answers = []
    for _ in range(2):
        headers = {"authorization": f"Bearer {tokens.user(role='employee', ttl=3600)}"}
        sid = await _session(http, headers)
        reply = await http.post(f"/sessions/{sid}/activity", json=EVENT, headers={**headers, "idempotency-key": key})
        assert reply.status_code == 201, reply.text
        assert "idempotent-replayed" not in reply.headers
        answers.append(reply.json()["session"]["id"])
    assert answers[0] != answers[1]


async def test_a_refused_request_is_replayed_too_and_a_bad_key_is_a_400(
    http: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    headers = {"authorization": f"Bearer {tokens.user(role='employee', ttl=3600)}", "idempotency-key": "bad-body"}
    refused = await http.post("/projects", json={"name": ""}, headers=headers)
    assert refused.status_code in (400, 403), refused.text
    replayed = await http.post("/projects", json={"name": ""}, headers=headers)
    assert replayed.status_code == refused.status_code and replayed.headers["idempotent-replayed"] == "true"
    bad = await http.post("/projects", json={"name": "x"}, headers={**headers, "idempotency-key": "x" * 300})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["message"]
