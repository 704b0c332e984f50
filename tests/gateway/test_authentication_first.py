"""Issue 10: an unauthenticated or unauthorised caller learns nothing about the request it
sent. Every authenticated operation of /openapi.json gets a request the gateway refuses on
its content (an unknown body field, a body that is not JSON, a malformed query value):
without a token and with a bad one it is a 401, from a role the route does not admit a 403,
and only a caller the route admits is told what is wrong with it (the 400 / 415 that shows
the request really was malformed)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.support import TokenFactory

pytestmark = pytest.mark.e2e

METHODS = ("get", "post", "put", "delete")
# Each of the routes' ``roles`` as documented: who may be told why a request is malformed.
RESTRICTED = {
    ("post", "/invites"): ("admin", "manager"),
    ("put", "/organization"): ("admin",),
    ("post", "/projects"): ("admin", "manager"),
    ("put", "/projects/{project_id}"): ("admin", "manager"),
    ("put", "/alerts/settings"): ("admin",),
    ("put", "/agent/policy"): ("admin", "manager"),
    ("get", "/reports/export.csv"): ("admin", "manager"),
}


def _malformed(path: str, operation: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
    """(url, httpx keyword arguments, the status a caller the route admits gets) per way of
    sending this operation a request refused on its content."""
    url = re.sub(r"\{[a-z_]+\}", "00000000-0000-4000-8000-000000000001", path)
    cases: list[tuple[str, dict[str, Any], int]] = []
    if "requestBody" in operation:
        cases.append((url, {"json": {"no_such_field_anywhere": 1}}, 400))
        cases.append((url, {"content": b"x=1", "headers": {"content-type": "text/plain"}}, 415))
    queries = [p for p in operation.get("parameters", []) if p["in"] == "query"]
    if queries:
        # Every declared parameter at once, each with a value none of them accepts.
        cases.append((url, {"params": {p["name"]: "\x00not-a-value" for p in queries}}, 400))
    return cases


@pytest.fixture(scope="module")
async def operations(mesh_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    async with httpx.AsyncClient(base_url=mesh_url) as http:
        document = (await http.get("/openapi.json")).json()
    found = [
        (method, path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS and op.get("security")
    ]
    assert len(found) > 20, "the document lists the authenticated operations"
    return found


@pytest.fixture(scope="module")
def mesh_url(mesh: Any) -> str:
    url: str = mesh.gateway_url
    return url


async def test_authentication_and_role_come_before_validation(
    mesh_url: str, operations: list[tuple[str, str, dict[str, Any]]], tokens: TokenFactory
) -> None:
    org = "11111111-1111-4111-8111-111111111111"
    role_tokens = {role: tokens.user(org, role=role, ttl=3600) for role in ("admin", "manager", "employee")}
    forged = tokens.user(org, role="admin", iss="someone-else")
    checked: list[str] = []
    wrong: list[str] = []
    async with httpx.AsyncClient(base_url=mesh_url, timeout=30) as http:
        for method, path, operation in operations:
            admitted = RESTRICTED.get((method, path), ("admin", "manager", "employee"))
            for url, kwargs, refusal in _malformed(path, operation):
                headers = dict(kwargs.pop("headers", {}))
                callers = [
                    ("no token", {}, 401),
                    ("not a token", {"authorization": "Bearer not-a-token"}, 401),
                    ("another issuer", {"authorization": f"Bearer {forged}"}, 401),
                    ("not bearer", {"authorization": f"Basic {role_tokens['admin']}"}, 401),
                ] + [
                    (role, {"authorization": f"Bearer {token}"}, refusal if role in admitted else 403)
                    for role, token in role_tokens.items()
                ]
                for who, auth, expected in callers:
                    reply = await http.request(method.upper(), url, headers={**headers, **auth}, **kwargs)
                    label = f"{method.upper()} {url} {sorted(kwargs)} as {who}"
                    checked.append(label)
                    if reply.status_code != expected:
                        wrong.append(f"{label}: {reply.status_code} (wanted {expected}) {reply.text[:160]}")
                    elif expected in (401, 403):
                        body = reply.json()
                        assert body["statusCode"] == expected and body["path"] == url.split("?")[0], body
    assert not wrong, "\n".join(wrong)
    assert len(checked) > 100, checked
