"""JSON log lines carrying service, trace, span, tenant and user ids.

Context variables hold the tenant and user of the request being served so every line
logged while serving it names them; secrets are never passed to the logger.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

from opentelemetry import trace

tenant_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant_id", default=None)
user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)

_SECRET_KEYS = {"password", "token", "access_token", "refresh_token", "authorization", "invite_token"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = format(span.trace_id, "032x")
            line["span_id"] = format(span.span_id, "016x")
        if (tenant := tenant_id.get()) is not None:
            line["tenant_id"] = tenant
        if (user := user_id.get()) is not None:
            line["user_id"] = user
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            line.update({k: ("[redacted]" if k in _SECRET_KEYS else v) for k, v in extra.items()})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
