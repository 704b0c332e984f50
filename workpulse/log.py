"""JSON log lines carrying service, trace, span, tenant and user ids.

Context variables hold the tenant and user of the request being served so every line
logged while serving it names them. Secrets are never passed to the logger on purpose,
but libraries log what they were given: uvicorn writes every request's URL (its access
log, and its ``"WebSocket /ws?token=…"`` lines at INFO), so every line is scrubbed by
:func:`redact` on its way out (message, traceback and fields), whichever logger wrote it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from opentelemetry import trace

tenant_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant_id", default=None)
user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)

_SECRET_KEYS = {"password", "token", "access_token", "refresh_token", "authorization", "invite_token"}

# Query parameters whose value is a credential, compared after percent-decoding and
# lower-casing (``%74oken=`` is ``token=`` to Starlette). ``sid`` is Engine.IO's session
# id: whoever holds it can poll a live Socket.IO connection's events.
SECRET_PARAMETERS = frozenset({"password", "token", "access_token", "refresh_token", "invite_token", "sid"})
MASK = "***"
# A ``name=value`` pair of a query string (or of text written like one): after ``?``, ``&``,
# whitespace or at the start. The value runs to the next ``&`` as Starlette reads it; it
# also stops at whitespace and quotes, which no issued credential holds but which end the
# URL inside uvicorn's lines.
_PARAMETER = re.compile(r"(?<![^?&\s])([^=&\s\"'?#]+)=([^&\s\"'#]*)")
# ``Bearer <token>`` (a header echoed in a message) and ``bearer.<token>`` (the /ws
# subprotocol); 16 characters at least, so prose such as "missing bearer token" stays.
_BEARER = re.compile(r"(?i)\b(bearer[ .]+)[A-Za-z0-9._~+/=-]{16,}")
# A JWT wherever it appears (three base64url parts, the first two JSON objects).
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def _mask_parameter(found: re.Match[str]) -> str:
    name = found.group(1)
    return f"{name}={MASK}" if unquote_plus(name).strip().lower() in SECRET_PARAMETERS else found.group(0)


def redact(text: str) -> str:
    """``text`` with credentials masked: the values of :data:`SECRET_PARAMETERS` in query
    strings, bearer tokens, and anything shaped like a JWT (an access token logged by a
    path nobody foresaw)."""
    text = _PARAMETER.sub(_mask_parameter, text) if "=" in text else text
    return _JWT.sub(MASK, _BEARER.sub(lambda m: m.group(1) + MASK, text))


def _redact_value(key: str, value: object) -> object:
    if key in _SECRET_KEYS:
        return "[redacted]"
    return redact(value) if isinstance(value, str) else value


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
            "msg": redact(record.getMessage()),
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
            line.update({k: _redact_value(str(k), v) for k, v in extra.items()})
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


def configure(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
