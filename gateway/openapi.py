"""The OpenAPI document at ``/openapi.json``, built from the routes and their pydantic models.

Handlers declare themselves with :func:`documented`; nothing is written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.routing import BaseRoute, Route

F = TypeVar("F", bound=Callable[..., Any])

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "statusCode": {"type": "integer"},
        "message": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "path": {"type": "string"},
    },
}


def documented(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    status: int = 200,
    auth: bool = True,
    errors: tuple[int, ...] = (400, 401, 404),
) -> Callable[[F], F]:
    def mark(endpoint: F) -> F:
        endpoint.__openapi__ = {  # type: ignore[attr-defined]
            "summary": summary,
            "body": body,
            "status": status,
            "auth": auth,
            "errors": errors,
        }
        return endpoint

    return mark


def build_document(routes: list[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        meta = getattr(route.endpoint, "__openapi__", None)
        if meta is None:
            continue
        path = route.path.replace("{", "{").replace(":str}", "}")
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation: dict[str, Any] = {
                "summary": meta["summary"],
                "responses": {str(meta["status"]): {"description": "success"}}
                | {
                    str(code): {
                        "description": "error",
                        "content": {"application/json": {"schema": ERROR_SCHEMA}},
                    }
                    for code in meta["errors"]
                },
            }
            if meta["auth"]:
                operation["security"] = [{"bearer": []}]
            if meta["body"] is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": meta["body"].model_json_schema()}},
                }
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "WorkPulse gateway", "version": "1.0.0"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "paths": paths,
    }
