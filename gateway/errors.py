"""The original's error body, ``{statusCode, message, timestamp, path}``, for every failure."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

logger = logging.getLogger("workpulse.gateway")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, path: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "statusCode": status,
        "message": message,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "path": path,
    }
    return JSONResponse(body, status_code=status, headers=headers)


async def on_starlette_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), request.url.path, dict(exc.headers or {}))


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled gateway error", exc_info=exc)
    return error_response(500, "internal error", request.url.path)
