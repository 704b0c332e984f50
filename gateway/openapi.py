"""The OpenAPI 3.1 document at ``/openapi.json``, built from the routes and their pydantic models.

Handlers declare themselves with :func:`documented` (summary, body model, response model,
query parameters, statuses); the routes give the paths and methods; nothing is written
twice. Path parameters come from the route's path (every one is a UUID). Schemas are
JSON Schema 2020-12 as pydantic writes them; every ``$defs`` entry is hoisted into
``components.schemas`` and every ``$ref`` points there, so generic tools (validators,
code generators, schemathesis) resolve the whole document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.routing import BaseRoute, Route

from gateway import idempotency, schemas

F = TypeVar("F", bound=Callable[..., Any])
Schema = dict[str, Any]

REF = "#/components/schemas/{model}"
JSON = "application/json"
UUID_SCHEMA: Schema = {"type": "string", "format": "uuid"}
ERROR_REF: Schema = {"$ref": REF.format(model="Error")}

# What each error status means here; every one has the Error body.
ERROR_DESCRIPTIONS = {
    400: "Invalid input; the message names the field first",
    401: "Missing, malformed, expired or revoked credentials",
    403: "Authenticated, but the role does not allow it",
    404: "Not found (also what another organization's objects look like)",
    409: "Conflict: already exists, version changed, the state forbids it, "
    "or a request with this Idempotency-Key is still in progress",
    413: "Request body larger than the gateway accepts",
    415: "Request body is not application/json",
    422: "This Idempotency-Key was already used for another request (method, path or body differ)",
    429: "Too many requests; retry after Retry-After seconds",
    503: "A service is unavailable or did not answer in time; retry",
}

# Statuses other than the main success and the errors (``documented(responses=...)``).
OTHER_DESCRIPTIONS = {
    202: "Accepted: stored, but the session's totals are not applied yet (session null, totals_pending true)",
    503: ERROR_DESCRIPTIONS[503],
}


@dataclass(frozen=True)
class Query:
    """One query parameter a handler reads."""

    name: str
    schema: Schema
    description: str
    required: bool = False


# Kinds of query value, as the handlers and services parse them.
_KINDS: dict[str, Schema] = {
    "uuid": UUID_SCHEMA,
    "date": {"type": "string", "format": "date"},
    # An ISO 8601 date-time, or a date (midnight UTC).
    "instant": {"type": "string", "anyOf": [{"format": "date-time"}, {"format": "date"}]},
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
}
_SPEC = re.compile(r"(?P<kind>\w+)(?: (?P<arg>[^\s!:]+))?(?P<required>!)?: (?P<text>.+)", re.DOTALL)


def parse_query(name: str, spec: str) -> Query:
    """``"KIND[ ARG][!]: description"``: KIND one of uuid, date, instant, string, boolean,
    ``int MIN..MAX`` or ``enum A|B``; ``!`` when required. Route modules write specs as text
    so that documenting a route touches only its decorator's arguments."""
    found = _SPEC.fullmatch(spec)
    if found is None:
        raise ValueError(f"query {name}: bad spec {spec!r}")
    kind, arg = found["kind"], found["arg"]
    if kind == "int" and arg is not None:
        low, _, high = arg.partition("..")
        schema: Schema = {"type": "integer", "minimum": int(low), "maximum": int(high)}
    elif kind == "enum" and arg is not None:
        schema = {"type": "string", "enum": arg.split("|")}
    elif kind in _KINDS and arg is None:
        schema = _KINDS[kind]
    else:
        raise ValueError(f"query {name}: unknown kind in {spec!r}")
    return Query(name, schema, found["text"], found["required"] is not None)


@dataclass(frozen=True)
class Operation:
    """What :func:`documented` records on a handler."""

    summary: str
    body: type[BaseModel] | None
    response: object
    status: int
    media_type: str
    auth: bool
    errors: tuple[int, ...]
    query: tuple[Query, ...]
    headers: Mapping[str, str]
    responses: Mapping[int, object] = field(default_factory=dict)
    roles: tuple[str, ...] = ()


def documented(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    response: object = None,
    status: int = 200,
    media_type: str = JSON,
    auth: bool = True,
    errors: tuple[int, ...] = (400, 401, 404, 503),
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    responses: Mapping[int, object] | None = None,
    roles: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Describes a handler.

    ``response``: the success body, as a name in :mod:`gateway.schemas` (``"User"``, or
    ``"User[]"`` for an array), a type (``str`` for text); None for no body. ``query``:
    every query parameter the handler reads, name to spec (see :func:`parse_query`).
    ``errors``: every error status it can answer, each with the Error body. ``headers``:
    the success's response headers, name to description. ``responses``: other statuses
    whose body is not the Error body (health's 503), status to a ``response``-like value.
    ``roles``: the only roles the route's service admits (empty: every role), so a caller
    of another role is refused (403) before its request is judged (see gateway.callers).
    Names rather than imports, so that documenting a route touches only these arguments.
    """
    params = tuple(parse_query(name, spec) for name, spec in (query or {}).items())

    def mark(endpoint: F) -> F:
        endpoint.__openapi__ = Operation(  # type: ignore[attr-defined]
            summary, body, response, status, media_type, auth, errors, params, headers or {}, responses or {}, roles
        )
        return endpoint

    return mark


def _resolve(kind: object) -> object:
    """A ``response`` value as a type: ``"User"`` is schemas.User, ``"User[]"`` list[schemas.User]."""
    if not isinstance(kind, str):
        return kind
    name = kind.removesuffix("[]")
    model = getattr(schemas, name, None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ValueError(f"gateway.schemas has no model {name}")
    return list[model] if kind.endswith("[]") else model  # type: ignore[valid-type]


class _Components:
    """``components.schemas``: each model once, under its name."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def add(self, name: str, schema: Schema) -> None:
        if self.schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas named {name} in the OpenAPI document")

    def hoist(self, schema: Schema) -> Schema:
        """``schema`` without its ``$defs``, which move here."""
        schema = dict(schema)
        for name, definition in schema.pop("$defs", {}).items():
            self.add(name, definition)
        return schema

    def of_type(self, named: object) -> Schema:
        """A model as a ``$ref`` to its component; any other type (``list[Model]``) inline."""
        kind = _resolve(named)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            self.add(kind.__name__, self.hoist(kind.model_json_schema(ref_template=REF)))
            return {"$ref": REF.format(model=kind.__name__)}
        return self.hoist(TypeAdapter(cast(Any, kind)).json_schema(ref_template=REF))


def _accepts_no_body(model: type[BaseModel]) -> bool:
    """parse_body reads a missing body as ``{}``: such a body is optional when ``{}`` is valid."""
    try:
        model.model_validate({})
    except ValidationError:
        return False
    return True


def _path_parameters(path: str) -> list[Schema]:
    return [
        {"name": name, "in": "path", "required": True, "schema": UUID_SCHEMA, "description": "a UUID"}
        for name in re.findall(r"{(\w+)}", path)
    ]


def _query_parameter(q: Query) -> Schema:
    return {"name": q.name, "in": "query", "required": q.required, "schema": q.schema, "description": q.description}


def _headers(headers: Mapping[str, str]) -> Schema:
    return {name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()}


def _content(components: _Components, kind: object, media_type: str) -> Schema:
    return {media_type: {"schema": components.of_type(kind)}}


def _error_response(code: int) -> Schema:
    found: Schema = {"description": ERROR_DESCRIPTIONS[code], "content": {JSON: {"schema": ERROR_REF}}}
    if code == 429:
        found["headers"] = _headers({"Retry-After": "seconds to wait before retrying"})
    return found


def _responses(components: _Components, op: Operation) -> Schema:
    success: Schema = {"description": op.summary}
    if op.response is not None:
        success["content"] = _content(components, op.response, op.media_type)
    if op.headers:
        success["headers"] = _headers(op.headers)
    found: Schema = {str(op.status): success}
    for code, kind in op.responses.items():
        found[str(code)] = {"description": OTHER_DESCRIPTIONS.get(code, op.summary)}
        found[str(code)]["content"] = _content(components, kind, JSON)
    for code in sorted(op.errors):
        found[str(code)] = {"$ref": f"#/components/responses/Error{code}"}
    return found


# gateway/idempotency.py's middleware, in front of every mutating route.
_IDEMPOTENCY_KEY: Schema = {
    "name": idempotency.HEADER.decode(),
    "in": "header",
    "required": False,
    # The middleware takes any printable text (after stripping spaces); documented is the
    # part every client uses, printable ASCII, so generated keys are ones it accepts.
    "schema": {"type": "string", "maxLength": idempotency.MAX_KEY_LENGTH, "pattern": "^[!-~]([ -~]*[!-~])?$"},
    "description": "your id of this request (printable); a retry with the same key and request gets the "
    "first answer again (marked Idempotent-Replayed: true) and runs nothing; keys are kept 24 hours",
}
_IDEMPOTENCY_ERRORS = (400, 409, 422)


def _operation(components: _Components, endpoint: Callable[..., Any], op: Operation, method: str, path: str) -> Schema:
    idempotent = method in idempotency.MUTATING
    if idempotent:
        replayed = {"Idempotent-Replayed": "'true' when this is the kept answer to an earlier request with the key"}
        errors = tuple(sorted(set(op.errors) | set(_IDEMPOTENCY_ERRORS)))
        op = replace(op, errors=errors, headers={**op.headers, **replayed})
    operation: Schema = {
        "operationId": endpoint.__name__,
        "tags": [endpoint.__module__.rsplit(".", 1)[-1]],
        "summary": op.summary,
        "responses": _responses(components, op),
    }
    parameters = _path_parameters(path) + [_query_parameter(q) for q in op.query]
    if idempotent:
        parameters.append(_IDEMPOTENCY_KEY)
    if parameters:
        operation["parameters"] = parameters
    if op.auth:
        operation["security"] = [{"bearer": []}]
    if op.body is not None:
        operation["requestBody"] = {
            "required": not _accepts_no_body(op.body),
            # Inline (not a $ref): tools and tests read a body's fields straight from here.
            "content": {JSON: {"schema": components.hoist(op.body.model_json_schema(ref_template=REF))}},
        }
    return operation


def build_document(routes: list[BaseRoute]) -> dict[str, Any]:
    components = _Components()
    components.add("Error", schemas.Error.model_json_schema(ref_template=REF))
    paths: dict[str, dict[str, Any]] = {}
    ids: set[str] = set()
    for route in routes:
        op = getattr(route.endpoint, "__openapi__", None) if isinstance(route, Route) else None
        if not isinstance(route, Route) or not isinstance(op, Operation):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation = _operation(components, route.endpoint, op, method, route.path_format)
            if operation["operationId"] in ids:
                raise ValueError(f"two handlers named {operation['operationId']}")
            ids.add(operation["operationId"])
            paths.setdefault(route.path_format, {})[method.lower()] = operation
    # The document's own route, which app.py adds without a handler of ours.
    this = "This OpenAPI document"
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "tags": ["description"],
            "summary": this,
            "responses": {"200": {"description": this, "content": {JSON: {"schema": {"type": "object"}}}}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "WorkPulse gateway",
            "version": "1.0.0",
            "description": "The original product's REST contract. Errors are always "
            "{statusCode, message, timestamp, path}. Authenticated operations need "
            "'Authorization: Bearer <access_token>' from /auth/register, /auth/login or /auth/refresh.",
        },
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            # One shared response per error status: each says what the status means here.
            "responses": {f"Error{code}": _error_response(code) for code in sorted(ERROR_DESCRIPTIONS)},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "paths": paths,
    }
