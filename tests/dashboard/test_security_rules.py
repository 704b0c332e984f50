"""The dashboard's rules a browser relies on, checked without a browser: the CSP header
with a fresh nonce, hashed static files cached forever, the CSRF rules of the session
endpoints, and the refresh cookie's attributes (against the whole mesh)."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from gateway.app import create_app
from gateway.dashboard.assets import Assets
from gateway.dashboard.security import plain_localhost
from gateway.settings import GatewaySettings
from tests.support import AsgiClient, Mesh
from workpulse.settings import load

PASSWORD = "correct horse battery"
NAVIGATION = {"accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8", "sec-fetch-dest": "document"}
PAGES = ("/login", "/live", "/sessions", "/reports", "/alerts", "/team")


def _client() -> AsgiClient:
    return AsgiClient(create_app(load(GatewaySettings)))


def _directives(header: str) -> dict[str, str]:
    return {d.split(" ", 1)[0]: d.partition(" ")[2] for d in (p.strip() for p in header.split(";")) if d}


async def test_every_page_has_a_strict_csp_with_a_nonce_of_its_own(settings_env: dict[str, str]) -> None:
    nonces = set()
    async with _client() as client:
        for path in PAGES:
            page = await client.get(path, headers=NAVIGATION)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            csp = _directives(page.headers["content-security-policy"])
            nonce = re.fullmatch(r"'nonce-([\w-]{20,})'", csp["script-src"])
            assert nonce, csp["script-src"]
            nonces.add(nonce[1])
            assert "unsafe-inline" not in page.headers["content-security-policy"]
            assert "unsafe-eval" not in page.headers["content-security-policy"]
            assert (csp["object-src"], csp["base-uri"], csp["frame-ancestors"]) == ("'none'", "'none'", "'none'")
            scripts = re.findall(r"<script\b[^>]*>", page.text)
            assert scripts and all(f'nonce="{nonce[1]}"' in s for s in scripts), scripts
            assert not re.search(r"\son[a-z]+\s*=", page.text), "inline event handler"
    assert len(nonces) == len(PAGES)


async def test_static_files_have_hashed_urls_and_are_cached_forever(settings_env: dict[str, str]) -> None:
    assets = Assets()
    async with _client() as client:
        page = await client.get("/live", headers=NAVIGATION)
        for path in ("app.js", "app.css", "vendor/htmx/htmx.min.js"):
            url = assets.url(path)
            assert url in page.text
            served = await client.get(url)
            assert served.status_code == 200
            assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        js = await client.get(assets.url("app.js"))
        assert js.headers["content-type"].startswith("text/javascript")
        stale = await client.get(assets.url("app.js").replace("/static/", "/static/0000", 1))
        assert stale.status_code == 404
        assert "immutable" not in stale.headers.get("cache-control", "")


async def test_the_pages_are_not_in_the_openapi_document(settings_env: dict[str, str]) -> None:
    async with _client() as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith(("/ui", "/static", "/live", "/login"))]
    assert "/" not in paths


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no CSRF header
        {"x-workpulse-csrf": "1"},  # neither Origin nor Sec-Fetch-Site
        {"x-workpulse-csrf": "1", "origin": "https://evil.example"},
        {"x-workpulse-csrf": "1", "origin": "http://gateway", "sec-fetch-site": "cross-site"},
        {"x-workpulse-csrf": "1", "sec-fetch-site": "same-site"},
        {"origin": "http://gateway", "sec-fetch-site": "same-origin"},  # a form post cannot add the header
    ],
)
async def test_session_endpoints_refuse_what_is_not_same_origin(
    settings_env: dict[str, str], headers: dict[str, str]
) -> None:
    async with _client() as client:
        client.cookies.set("wp_refresh", "a-stolen-one", path="/ui/session")
        for path in ("/ui/session", "/ui/session/refresh", "/ui/session/logout"):
            reply = await client.post(
                path, json={"workspace": "w", "email": "e@x.io", "password": "p"}, headers=headers
            )
            assert reply.status_code == 403, (path, reply.text)
            assert "set-cookie" not in reply.headers


async def test_refresh_without_a_cookie_is_401(settings_env: dict[str, str]) -> None:
    async with _client() as client:
        reply = await client.post("/ui/session/refresh", headers={"x-workpulse-csrf": "1", "origin": "http://gateway"})
    assert reply.status_code == 401


def test_plain_http_is_exempt_from_secure_only_on_localhost() -> None:
    from starlette.requests import Request

    def request(url: str) -> Request:
        parsed = httpx.URL(url)
        return Request(
            {
                "type": "http",
                "scheme": parsed.scheme,
                "server": (parsed.host, parsed.port or 80),
                "path": "/",
                "headers": [(b"host", parsed.netloc)],
            }
        )

    assert plain_localhost(request("http://127.0.0.1:3000/"))
    assert plain_localhost(request("http://localhost:3000/"))
    assert not plain_localhost(request("http://dashboard.example/"))
    assert not plain_localhost(request("https://localhost/"))


async def _sign_up(http: httpx.AsyncClient) -> tuple[str, str]:
    workspace = f"ui-{uuid.uuid4().hex[:10]}"
    email = f"{workspace}@example.com"
    body = {
        "email": email,
        "password": PASSWORD,
        "name": "Cookie",
        "organization_name": "Cookie Co",
        "workspace": workspace,
    }
    reply = await http.post("/auth/register", json=body)
    assert reply.status_code == 201, reply.text
    return workspace, email


async def test_log_in_sets_only_an_httponly_strict_cookie_and_log_out_revokes(
    mesh: Mesh, http: httpx.AsyncClient
) -> None:
    workspace, email = await _sign_up(http)
    same = {"x-workpulse-csrf": "1", "origin": mesh.gateway_url}
    reply = await http.post(
        "/ui/session", json={"workspace": workspace, "email": email, "password": PASSWORD}, headers=same
    )
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == {"access_token", "token_type", "expires_in", "user"}
    cookie = reply.headers["set-cookie"]
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "path", "samesite"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/ui/session" in cookie.lower()
    assert "secure" not in attributes  # plain http to 127.0.0.1 only
    refresh_token = cookie.split(";")[0].partition("=")[2]
    assert refresh_token not in reply.text

    rotated = await http.post("/ui/session/refresh", headers=same)
    assert rotated.status_code == 200, rotated.text
    assert (
        await http.get("/me", headers={"authorization": f"Bearer {rotated.json()['access_token']}"})
    ).status_code == 200
    assert (await http.post("/auth/refresh", json={"refresh_token": refresh_token})).status_code == 401  # rotated away

    current = http.cookies.get("wp_refresh", path="/ui/session")
    out = await http.post("/ui/session/logout", headers=same)
    assert out.status_code == 204
    assert "max-age=0" in out.headers["set-cookie"].lower()
    assert (await http.post("/auth/refresh", json={"refresh_token": current})).status_code == 401  # revoked
    assert (await http.post("/ui/session/refresh", headers=same)).status_code == 401


async def test_a_wrong_password_is_401_and_sets_no_cookie(mesh: Mesh, http: httpx.AsyncClient) -> None:
    workspace, email = await _sign_up(http)
    same = {"x-workpulse-csrf": "1", "origin": mesh.gateway_url}
    reply = await http.post(
        "/ui/session", json={"workspace": workspace, "email": email, "password": "nope-nope"}, headers=same
    )
    assert reply.status_code == 401
    assert "set-cookie" not in reply.headers


async def test_rest_paths_shared_with_pages_still_answer_their_clients(settings_env: dict[str, str]) -> None:
    async with _client() as client:
        page = await client.get("/sessions", headers=NAVIGATION)
        api = await client.get("/sessions", headers={"accept": "application/json"})
        anything = await client.get("/alerts")
    assert page.headers["content-type"].startswith("text/html")
    # The REST routes (no service configured here: their 503 error body).
    for reply in (api, anything):
        assert reply.headers["content-type"].startswith("application/json")
        assert set(reply.json()) == {"statusCode", "message", "timestamp", "path"}
