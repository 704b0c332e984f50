"""Text a client may store: what every entry point refuses before it reaches the database.

PostgreSQL refuses NUL in text outright (a 500 if it got that far), and the other control
characters corrupt logs, CSV exports and the original's clients. Tab, line feed and
carriage return stay allowed: descriptions are free text. One rule, used by the gateway's
bodies, the kernel interceptor (every unary gRPC request) and ingest's per-event
admission (streamed events).
"""

from __future__ import annotations

import re

# C0 controls except \t \n \r, DEL, and the C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
CONTROL_MESSAGE = "must not contain control characters"


def has_control_character(value: str) -> bool:
    return _CONTROL.search(value) is not None
