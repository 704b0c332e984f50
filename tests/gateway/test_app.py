"""The gateway shell: health naming what is down, CORS from configuration, the error body
for unknown routes, and the OpenAPI document."""

from __future__ import annotations

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.support import AsgiClient, free_port
from workpulse.settings import load

ALLOWED = "https://app.example.com"


def _client(**settings: str) -> AsgiClient:
    return AsgiClient(create_app(load(GatewaySettings, cors_origins=ALLOWED, **settings)))


async def test_health_is_503_naming_the_service_that_is_down(settings_env: dict[str, str]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with _client(auth_addr=dead) as client:
        reply = await client.get("/health")
    assert reply.status_code == 503
    body = reply.json()
    assert body["status"] == "error"
    assert body["error"]["auth"]["status"] == "down"
    assert body["info"]["database"] == {"status": "up"} and body["info"]["redis"] == {"status": "up"}


async def test_health_is_200_when_everything_is_up(settings_env: dict[str, str]) -> None:
    async with _client() as client:
        reply = await client.get("/health")
    assert reply.status_code == 200
    assert reply.json()["status"] == "ok"


async def test_cors_allows_only_configured_origins(settings_env: dict[str, str]) -> None:
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    async with _client() as client:
        allowed = await client.options("/auth/login", headers={"origin": ALLOWED, **preflight})
        refused = await client.options("/auth/login", headers={"origin": "https://evil.example", **preflight})
    assert allowed.headers.get("access-control-allow-origin") == ALLOWED
    assert "access-control-allow-origin" not in refused.headers


async def test_unknown_route_and_wrong_method_use_the_error_body(settings_env: dict[str, str]) -> None:
    async with _client() as client:
        missing = await client.get("/no/such/route")
        wrong = await client.delete("/health")
    for reply, status in ((missing, 404), (wrong, 405)):
        assert reply.status_code == status
        assert set(reply.json()) == {"statusCode", "message", "timestamp", "path"}


async def test_openapi_document_describes_bodies_and_errors(settings_env: dict[str, str]) -> None:
    async with _client() as client:
        doc = (await client.get("/openapi.json")).json()
    login = doc["paths"]["/auth/login"]["post"]
    assert "email" in login["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "400" in login["responses"]
    assert doc["openapi"].startswith("3.")
