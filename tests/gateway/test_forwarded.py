"""Issue 10: ``X-Forwarded-For`` names the client only when a configured proxy sent it.

Two gateways in front of one auth service with a log-in limit of three per address: one
trusting nobody (the default), one trusting 127.0.0.1 as its proxy (``FORWARDED_ALLOW_IPS``).
Through the first, a forged header picks no new bucket: the client is still its TCP peer,
already limited. Through the second, the proxy's word is the client's address."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Mesh, start_mesh

pytestmark = pytest.mark.e2e

LIMIT = 3


@pytest.fixture(scope="module")
def gateways(mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, Mesh]]:
    env = {
        **mesh_env,
        "LOGIN_ATTEMPTS_PER_ADDRESS": str(LIMIT),
        "REDIS_PREFIX": f"{mesh_env['REDIS_PREFIX']}:xff{uuid.uuid4().hex[:6]}",
    }
    untrusting = start_mesh(env, Path(tmp_path_factory.mktemp("xff")), only=("auth", "gateway"))
    try:
        behind_proxy = start_mesh(
            {**env, "AUTH_ADDR": untrusting.address("auth"), "FORWARDED_ALLOW_IPS": "127.0.0.1"},
            Path(tmp_path_factory.mktemp("xff-proxy")),
            only=("gateway",),
        )
    except BaseException:
        untrusting.stop()
        raise
    yield untrusting, behind_proxy
    behind_proxy.stop()
    untrusting.stop()


async def _log_in(http: httpx.AsyncClient, forwarded_for: str | None = None) -> int:
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    body = {"email": "nobody@example.com", "password": "wrong", "organization_id": str(uuid.uuid4())}
    reply = await http.post("/auth/login", json=body, headers=headers)
    assert reply.status_code in (401, 429), reply.text
    return reply.status_code


async def test_a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(gateways: tuple[Mesh, Mesh]) -> None:
    untrusting, _ = gateways
    async with httpx.AsyncClient(base_url=untrusting.gateway_url, timeout=30) as http:
        # The peer's own bucket, spent through forged headers that each name a new address.
        spent = [await _log_in(http, f"198.51.100.{n}") for n in range(LIMIT)]
        assert spent == [401] * LIMIT
        assert await _log_in(http) == 429
        assert await _log_in(http, "203.0.113.77") == 429, "a forged address opened a fresh bucket"


async def test_a_configured_proxy_names_the_client(gateways: tuple[Mesh, Mesh]) -> None:
    _, behind_proxy = gateways
    async with httpx.AsyncClient(base_url=behind_proxy.gateway_url, timeout=30) as http:
        client = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
        assert [await _log_in(http, client) for _ in range(LIMIT)] == [401] * LIMIT
        assert await _log_in(http, client) == 429
        # Another client behind the same proxy has a bucket of its own.
        assert await _log_in(http, "192.0.2.254" if client != "192.0.2.254" else "192.0.2.253") == 401
