"""``/openapi.json`` as generic tools read it: a valid OpenAPI 3.1 document, every ``$ref``
resolving, every route of the app with its path and query parameters, bodies and
responses. No servers needed: the app is built but never started (the document is
served without the lifespan)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp

from gateway import app as gateway_app
from gateway.openapi import documented
from gateway.settings import GatewaySettings
from workpulse.settings import load

ROUTES_DIR = Path(gateway_app.__file__).parent / "routes"
PUBLIC = {
    ("post", "/auth/register"),
    ("post", "/auth/login"),
    ("post", "/auth/refresh"),
    ("post", "/auth/logout"),
    ("get", "/health"),
    ("get", "/openapi.json"),
}
# Bodies whose every field is optional: parse_body reads no body as {}.
OPTIONAL_BODIES = {
    ("post", "/sessions/start"),
    ("post", "/sessions/{session_id}/stop"),
    ("put", "/projects/{project_id}"),
}
# Every way a handler reads a query parameter.
QUERY_READS = re.compile(r'(?:query_params|\bq)\.get\(\s*"(\w+)"|(?:query_id|_query_instant)\(request, "(\w+)"\)')


@pytest.fixture(scope="module")
def app(module_patch: pytest.MonkeyPatch) -> Starlette:
    # realtime.mount wraps the app in an ASGI callable (for /ws and Socket.IO, which are not
    # REST); without it create_app hands back the Starlette app, whose routes we can walk.
    module_patch.setattr(gateway_app.realtime, "mount", lambda app, settings: app)
    built: ASGIApp = gateway_app.create_app(
        load(GatewaySettings, database_url="postgresql://unused@127.0.0.1/x", redis_url="redis://127.0.0.1:1/0")
    )
    assert isinstance(built, Starlette)
    return built


@pytest.fixture(scope="module")
def module_patch() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
async def document(app: Starlette) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        reply = await client.get("/openapi.json")
    assert reply.status_code == 200
    found: dict[str, Any] = reply.json()
    return found


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in document["paths"].items() for m, op in ops.items()]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert refs, "expected $refs to shared schemas"
    for ref in refs:
        assert _resolve(document, ref) is not None, ref


def test_every_route_of_the_app_is_documented(app: Starlette, document: dict[str, Any]) -> None:
    served = {
        (method.lower(), route.path_format)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }
    documented_ops = {(m, p) for m, p, _ in _operations(document)}
    assert served == documented_ops
    ids = [op["operationId"] for _, _, op in _operations(document)]
    assert len(ids) == len(set(ids))


def test_every_path_parameter_is_a_required_uuid(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        declared = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "path"}
        assert set(declared) == set(re.findall(r"{(\w+)}", path)), (method, path)
        for p in declared.values():
            assert p["required"] is True and p["schema"] == {"type": "string", "format": "uuid"}, (method, path)


def test_every_query_parameter_a_handler_reads_is_declared(document: dict[str, Any]) -> None:
    by_tag: dict[str, set[str]] = {}
    for _, _, op in _operations(document):
        names = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        by_tag.setdefault(op["tags"][0], set()).update(names)
    for module in ROUTES_DIR.glob("*.py"):
        read = {a or b for a, b in QUERY_READS.findall(module.read_text())}
        assert read <= by_tag.get(module.stem, set()), (module.name, read - by_tag.get(module.stem, set()))


def test_query_parameters_have_types_and_fixed_sets_as_enums(document: dict[str, Any]) -> None:
    params = {(path, p["name"]): p for _, path, op in _operations(document) for p in op.get("parameters", [])}
    assert params[("/sessions", "status")]["schema"]["enum"] == ["active", "stopped"]
    assert params[("/alerts", "type")]["schema"]["enum"] == ["INACTIVE_ALERT", "OVERTIME_ALERT"]
    assert params[("/alerts", "acknowledged")]["schema"] == {"type": "boolean"}
    assert params[("/sessions", "page_size")]["schema"] == {"type": "integer", "minimum": 0, "maximum": 200}
    assert params[("/reports/user/{user_id}", "startDate")]["required"] is True
    assert params[("/reports/daily", "date")]["required"] is False
    for (path, name), p in params.items():
        assert "type" in p["schema"] and p["description"], (path, name)


def test_bodies_inline_and_optional_only_where_an_empty_body_is_accepted(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        if "requestBody" not in op:
            assert method in ("get", "delete") or path == "/alerts/{alert_id}/acknowledge", (method, path)
            continue
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert "properties" in schema and "$defs" not in schema, (method, path)
        assert op["requestBody"]["required"] is ((method, path) not in OPTIONAL_BODIES), (method, path)


def test_every_response_has_its_schema(document: dict[str, Any]) -> None:
    error = _resolve(document, "#/components/schemas/Error")
    assert set(error["required"]) == {"statusCode", "message", "timestamp", "path"}
    for method, path, op in _operations(document):
        successes = [code for code in op["responses"] if code.startswith("2")]
        assert successes, (method, path)
        for code in successes:
            success = op["responses"][code]
            if code == "204":
                assert "content" not in success, (method, path)
            else:
                (media,) = success["content"].values()
                assert "schema" in media, (method, path, code)
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")) and path != "/health":
                body = _resolve(document, response["$ref"])["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/Error"}, (method, path, code)
    export = document["paths"]["/reports/export.csv"]["get"]["responses"]["200"]
    assert list(export["content"]) == ["text/csv"]
    health = document["paths"]["/health"]["get"]["responses"]
    assert health["503"]["content"] == health["200"]["content"]


def test_authenticated_operations_need_the_bearer_scheme(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert "security" not in document  # no default: each operation says
    for method, path, op in _operations(document):
        if (method, path) in PUBLIC:
            assert "security" not in op, (method, path)
        else:
            assert op["security"] == [{"bearer": []}] and "401" in op["responses"], (method, path)


def test_a_bad_query_spec_fails_at_import() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        documented("x", query={"when": "sometime: never"})
    with pytest.raises(ValueError, match="bad spec"):
        documented("x", query={"when": "no description"})
