"""Issue 10: one list of origins (``CORS_ORIGINS``) for every way a browser reaches the
gateway. A refused preflight answers the standard error body; an allowed page may read the
headers clients need (``X-Next-Page-Token``, ``Retry-After``) and send ``Idempotency-Key``;
``/ws`` and Socket.IO (both transports) refuse a page of another origin, and admit the
allowed one and clients that send no ``Origin`` (the agent, scripts)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import socketio
from websockets.exceptions import InvalidStatus

from tests.realtime.clients import WsListener, polite_or_dropped
from tests.support import Mesh, TokenFactory, start_mesh

pytestmark = pytest.mark.e2e

ALLOWED = "https://app.example.com"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def origin_mesh(mesh_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    env = {
        **mesh_env,
        "CORS_ORIGINS": ALLOWED,
        "REDIS_PREFIX": f"{mesh_env['REDIS_PREFIX']}:cors{uuid.uuid4().hex[:6]}",
    }
    running = start_mesh(
        env, Path(tmp_path_factory.mktemp("origins")), only=("auth", "sessions", "realtime", "gateway")
    )
    yield running
    running.stop()


async def test_preflights_and_exposed_headers(origin_mesh: Mesh, tokens: TokenFactory) -> None:
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    async with httpx.AsyncClient(base_url=origin_mesh.gateway_url, timeout=30) as http:
        refused = await http.options("/auth/login", headers={"origin": EVIL, **preflight})
        assert refused.status_code == 400
        body = refused.json()
        assert body["statusCode"] == 400 and body["path"] == "/auth/login" and "origin" in body["message"]
        assert set(body) == {"statusCode", "message", "timestamp", "path"}
        assert "access-control-allow-origin" not in refused.headers

        keyed = {
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, idempotency-key",
        }
        allowed = await http.options("/sessions/start", headers={"origin": ALLOWED, **keyed})
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == ALLOWED

        token = tokens.user(role="manager", ttl=600)
        listed = await http.get("/sessions", headers={"origin": ALLOWED, "authorization": f"Bearer {token}"})
        assert listed.status_code == 200, listed.text
        exposed = {h.strip().lower() for h in listed.headers["access-control-expose-headers"].split(",")}
        assert {"x-next-page-token", "retry-after", "idempotent-replayed"} <= exposed


async def test_live_connections_refuse_other_origins(origin_mesh: Mesh, tokens: TokenFactory) -> None:
    token = tokens.user(role="employee", ttl=600)
    ws_url = origin_mesh.gateway_url.replace("http", "ws") + f"/ws?token={token}"
    with pytest.raises(InvalidStatus) as refused:
        await WsListener(ws_url).connect(origin=EVIL)
    assert refused.value.response.status_code == 403
    for origin in (ALLOWED, None):
        listener = await WsListener(ws_url).connect(**({"origin": origin} if origin else {}))
        await listener.started()
        await listener.close()

    # Socket.IO's handshake on each transport, as a browser page of another origin sends
    # it: refused by the server (the client library's error for it varies by transport).
    engine = f"{origin_mesh.gateway_url}/socket.io/?EIO=4"
    async with httpx.AsyncClient(timeout=10) as http:
        polled = await http.get(f"{engine}&transport=polling", headers={"origin": EVIL})
    assert polled.status_code == 400, polled.text
    with pytest.raises(InvalidStatus) as upgraded:
        await WsListener(f"{engine.replace('http', 'ws')}&transport=websocket").connect(origin=EVIL)
    assert upgraded.value.response.status_code in (400, 403)
    for transports in (["websocket"], ["polling"]):
        for headers in ({"Origin": ALLOWED}, {}):
            client = socketio.AsyncClient(reconnection=False)
            await client.connect(
                origin_mesh.gateway_url, auth={"token": token}, headers=headers, transports=transports, wait_timeout=10
            )
            assert client.connected, (transports, headers)
            await polite_or_dropped(client, transports)
