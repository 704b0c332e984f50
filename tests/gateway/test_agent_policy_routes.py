"""The agent policy's REST routes through real gateway, sessions and ingest processes:
the camelCase shape, who may do what, 409 on a stale version, 400s naming the body's
fields (the gateway's and ingest's alike), and window titles on the activity routes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Caller, Mesh, TokenFactory, eventually, start_mesh
from workpulse.redisconn import Keys, events_stream

NULL_POLICY = {
    "idleThresholdSeconds": None,
    "windowSampleSeconds": None,
    "idleSampleSeconds": None,
    "collectTitles": None,
    "collectUrls": None,
    "dropRules": [],
    "redactRules": [],
    "trackingHours": None,
    "agentSilenceSeconds": None,
    "shareCurrentApp": None,
}
NINE_TO_FIVE = {
    "timezone": "Europe/Berlin",
    "windows": [{"weekdays": [1, 2, 3, 4, 5], "start": "09:00", "end": "17:00"}],
}


@pytest.fixture(scope="module")
def policy_mesh(mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(mesh_env, Path(tmp_path_factory.mktemp("policy-mesh")), only=("sessions", "ingest", "gateway"))
    yield running
    running.stop()


@pytest.fixture
async def client(policy_mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=policy_mesh.gateway_url, timeout=30) as http:
        yield http


@pytest.fixture
def people(tokens: TokenFactory) -> dict[str, Caller]:
    org = str(uuid.uuid4())
    found = {}
    for role in ("admin", "manager", "employee"):
        sub = str(uuid.uuid4())
        found[role] = Caller(sub, org, role, tokens.user(org=org, sub=sub, role=role))
    return found


def _error(response: httpx.Response, status: int, starts: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"statusCode", "message", "timestamp", "path"}
    assert body["statusCode"] == status and body["message"].startswith(starts), body


async def test_nothing_stored_reads_as_version_0_and_the_products_defaults(
    client: httpx.AsyncClient, people: dict[str, Caller]
) -> None:
    stored = await client.get("/agent/policy", headers=people["manager"].headers)
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"version": 0, "defaults": NULL_POLICY, "users": [], "updatedAt": None}
    mine = await client.get("/agent/policy/effective", headers=people["employee"].headers)
    assert mine.status_code == 200, mine.text
    assert mine.json() == {
        "version": 0,
        "policy": {
            "idleThresholdSeconds": 300,
            "windowSampleSeconds": 1,
            "idleSampleSeconds": 5,
            "collectTitles": True,
            "collectUrls": True,
            "dropRules": [],
            "redactRules": [],
            "trackingHours": None,
            "agentSilenceSeconds": 120,
            "shareCurrentApp": True,
        },
    }


async def test_a_put_round_trips_and_each_user_reads_their_merge(
    client: httpx.AsyncClient, people: dict[str, Caller], redis_prefix: str, server_urls: tuple[str, str]
) -> None:
    employee = people["employee"]
    body = {
        "defaults": {
            "idleThresholdSeconds": 600.0,  # a whole number written as a float counts
            "collectUrls": False,
            "dropRules": [{"field": "app", "pattern": "^bank"}],
            "trackingHours": NINE_TO_FIVE,
            "agentSilenceSeconds": 900,
            "shareCurrentApp": False,
        },
        "users": [
            {
                "userId": employee.id.upper(),
                "policy": {
                    "collectUrls": True,
                    "redactRules": [{"field": "title", "pattern": r"\d{16}"}],
                    "shareCurrentApp": True,
                },
            }
        ],
    }
    put = await client.put("/agent/policy", json=body, headers=people["manager"].headers)
    assert put.status_code == 200, put.text
    stored = put.json()
    assert stored["version"] == 1 and stored["updatedAt"].endswith("Z")
    assert stored["defaults"] == {**NULL_POLICY, **body["defaults"], "idleThresholdSeconds": 600}
    assert stored["users"] == [
        {"userId": employee.id, "policy": {**NULL_POLICY, **body["users"][0]["policy"]}}  # type: ignore[index]
    ]
    assert (await client.get("/agent/policy", headers=people["admin"].headers)).json() == stored
    mine = (await client.get("/agent/policy/effective", headers=employee.headers)).json()
    assert mine["version"] == 1
    assert mine["policy"] == {
        "idleThresholdSeconds": 600,
        "windowSampleSeconds": 1,
        "idleSampleSeconds": 5,
        "collectTitles": True,
        "collectUrls": True,
        "dropRules": [{"field": "app", "pattern": "^bank"}],
        "redactRules": [{"field": "title", "pattern": r"\d{16}"}],
        "trackingHours": NINE_TO_FIVE,
        "agentSilenceSeconds": 900,
        "shareCurrentApp": True,
    }
    theirs = (await client.get("/agent/policy/effective", headers=people["manager"].headers)).json()
    assert (theirs["policy"]["collectUrls"], theirs["policy"]["redactRules"]) == (False, [])
    assert theirs["policy"]["shareCurrentApp"] is False  # the organization's, not overridden
    # The change's event reaches the events stream (relayed from ingest's outbox).
    redis = aioredis.Redis.from_url(server_urls[1])
    try:

        async def published() -> list[dict[str, Any]]:
            entries = await redis.xrevrange(events_stream(Keys(redis_prefix)), count=200)
            return [
                json.loads(fields[b"data"])
                for _, fields in entries
                if fields[b"type"] == b"AGENT_POLICY_UPDATED" and fields[b"org"].decode() == employee.org
            ]

        found = await eventually(published, timeout=10, what="AGENT_POLICY_UPDATED on the events stream")
        assert found == [{"organizationId": employee.org, "version": 1, "agentSilenceSeconds": 900}]
    finally:
        await redis.aclose()


async def test_a_stale_expected_version_is_409_and_changes_nothing(
    client: httpx.AsyncClient, people: dict[str, Caller]
) -> None:
    admin = people["admin"].headers
    first = await client.put("/agent/policy", json={"defaults": {"idleSampleSeconds": 10}}, headers=admin)
    assert first.json()["version"] == 1
    second = await client.put(
        "/agent/policy", json={"expectedVersion": 1, "defaults": {"idleSampleSeconds": 20}}, headers=admin
    )
    assert second.json()["version"] == 2
    stale = await client.put(
        "/agent/policy", json={"expectedVersion": 1, "defaults": {"idleSampleSeconds": 30}}, headers=admin
    )
    _error(stale, 409, "expectedVersion: the policy is no longer version 1")
    now = (await client.get("/agent/policy", headers=admin)).json()
    assert (now["version"], now["defaults"]["idleSampleSeconds"]) == (2, 20)


async def test_employees_read_only_their_own_effective_policy(
    client: httpx.AsyncClient, people: dict[str, Caller]
) -> None:
    employee = people["employee"].headers
    _error(await client.get("/agent/policy", headers=employee), 403, "requires role admin or manager")
    _error(await client.put("/agent/policy", json={"defaults": {}}, headers=employee), 403, "requires role")
    # Refused for its role before its body is judged.
    _error(await client.put("/agent/policy", json={"defaults": {"idleThresholdSeconds": 1}}, headers=employee), 403, "")
    _error(await client.put("/agent/policy", content=b"{", headers=employee), 403, "")
    _error(await client.get("/agent/policy/effective"), 401, "")
    _error(await client.put("/agent/policy", json={"defaults": {"idleThresholdSeconds": 1}}), 401, "")
    assert (await client.get("/agent/policy", headers=people["admin"].headers)).json()["version"] == 0


USER = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("body", "starts"),
    [
        ({}, "defaults: Field required"),
        ({"defaults": {"idleThresholdSeconds": 0}}, "defaults.idleThresholdSeconds: Input should be greater than"),
        ({"defaults": {"idleThresholdSeconds": "300"}}, "defaults.idleThresholdSeconds:"),
        ({"defaults": {"collectTitles": "no"}}, "defaults.collectTitles:"),
        ({"defaults": {"collect_titles": False}}, "defaults.collect_titles: unknown field"),
        ({"defaults": {"shareCurrentApp": "yes"}}, "defaults.shareCurrentApp:"),
        ({"defaults": {"dropRules": [{"field": "window", "pattern": "x"}]}}, "defaults.dropRules.0.field:"),
        ({"defaults": {"dropRules": [{"field": "app", "pattern": "x" * 513}]}}, "defaults.dropRules.0.pattern:"),
        (
            {"defaults": {"dropRules": [{"field": "app", "pattern": "a\u0000"}]}},
            "defaults.dropRules.0.pattern: must not",
        ),
        (
            {"defaults": {"trackingHours": {**NINE_TO_FIVE, "windows": [{"start": "9am", "end": "17:00"}]}}},
            "defaults.trackingHours.windows.0.start:",
        ),
        (
            {
                "defaults": {
                    "trackingHours": {**NINE_TO_FIVE, "windows": [{"weekdays": [8], "start": "09:00", "end": "17:00"}]}
                }
            },
            "defaults.trackingHours.windows.0.weekdays.0:",
        ),
        ({"defaults": {}, "users": [{"userId": "bob", "policy": {}}]}, "users.0.userId: must be a UUID"),
        ({"defaults": {}, "expectedVersion": -1}, "expectedVersion:"),
        ({"defaults": {}, "expectedVersion": 2**64}, "expectedVersion:"),
        # Refused by ingest's rules, named in the body's terms.
        (
            {"defaults": {"redactRules": [{"field": "url", "pattern": "(unclosed"}]}},
            "defaults.redactRules.0.pattern: not a regular expression",
        ),
        (
            {"defaults": {"trackingHours": {**NINE_TO_FIVE, "timezone": "Mars/Base"}}},
            "defaults.trackingHours.timezone: unknown time zone",
        ),
        (
            {"defaults": {}, "users": [{"userId": USER, "policy": {}}, {"userId": USER, "policy": {}}]},
            "users.1.userId: this user already has an entry",
        ),
        (
            {
                "defaults": {},
                "users": [
                    {
                        "userId": USER,
                        "policy": {
                            "trackingHours": {
                                "timezone": "UTC",
                                "windows": [{"weekdays": [3, 3], "start": "01:00", "end": "02:00"}],
                            }
                        },
                    }
                ],
            },
            "users.0.policy.trackingHours.windows.0.weekdays: each day",
        ),
    ],
)
async def test_a_bad_body_is_a_400_naming_the_field(
    client: httpx.AsyncClient, people: dict[str, Caller], body: dict[str, Any], starts: str
) -> None:
    _error(await client.put("/agent/policy", json=body, headers=people["admin"].headers), 400, starts)
    assert (await client.get("/agent/policy", headers=people["admin"].headers)).json()["version"] == 0


async def test_bodies_that_are_not_json_objects_are_refused(
    client: httpx.AsyncClient, people: dict[str, Caller]
) -> None:
    admin = people["admin"].headers
    _error(await client.put("/agent/policy", content=b"{", headers=admin), 400, "malformed JSON body")
    _error(await client.put("/agent/policy", content=b"[]", headers=admin), 400, "request body must be a JSON object")
    _error(await client.put("/agent/policy", content=b"{}", headers={**admin, "content-type": "text/plain"}), 415, "")


async def test_the_activity_routes_take_a_title_and_the_policy_drops_it(
    client: httpx.AsyncClient, people: dict[str, Caller], owner_engine: AsyncEngine
) -> None:
    employee = people["employee"].headers
    session = (await client.post("/sessions/start", json={}, headers=employee)).json()
    path = f"/sessions/{session['id']}/activity"
    one = {"activityType": "active", "durationSeconds": 5, "clientEventId": "kept", "title": "Quarterly plan — Docs"}
    assert (await client.post(path, json=one, headers=employee)).status_code == 201
    _error(await client.post(path, json={**one, "title": "x" * 1025}, headers=employee), 400, "title:")
    put = await client.put(
        "/agent/policy", json={"defaults": {"collectTitles": False}}, headers=people["admin"].headers
    )
    assert put.status_code == 200, put.text
    assert (await client.post(path, json={**one, "clientEventId": "dropped"}, headers=employee)).status_code == 201
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text("select client_event_id, title from ingest.activity_logs where session_id = :s"), {"s": session["id"]}
        )
        assert dict(rows.all()) == {"kept": "Quarterly plan — Docs", "dropped": None}  # type: ignore[arg-type]
