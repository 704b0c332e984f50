"""Shapes shared by every route module: strict JSON bodies, UUIDs from paths and queries,
and timestamps written the way the original wrote them (ISO 8601, UTC, ``Z``).

A body refuses here, with a 400 naming the field, every value the services or the
database would refuse later: unknown fields (the original's whitelist), text with
control characters or lone surrogates, NaN and infinities, fractional numbers where
whole ones are expected, instants outside what a protobuf Timestamp holds."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Annotated

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, field_validator
from starlette.requests import Request

from gateway.errors import HTTPError
from workpulse.text import CONTROL_MESSAGE, has_control_character


def _whole(value: object) -> object:
    """9913 and 9913.0 (as the original accepted), never 9913.5, true or "9913"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise ValueError("must be a whole number")
        return int(value)
    return value


def _representable(value: datetime) -> datetime:
    """An instant a protobuf Timestamp (years 1..9999, UTC) holds; naive means UTC."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range (years 1 to 9999, UTC)") from None
    return utc


WholeNumber = Annotated[int, BeforeValidator(_whole)]
Instant = Annotated[datetime, AfterValidator(_representable)]


class Body(BaseModel):
    """Strict: a number is not an email, a string is not a number; unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: object) -> object:
        if isinstance(value, str):
            # JSON may carry lone surrogates ("\ud800"), which protobuf strings cannot.
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode text") from None
            if has_control_character(value):
                raise ValueError(CONTROL_MESSAGE)
        return value


def iso(stamp: Timestamp, present: bool = True) -> str | None:
    if not present:
        return None
    return stamp.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def uuid_field(raw: str, name: str) -> str:
    """``raw`` as a canonical UUID; 400 naming ``name`` otherwise (never a 500, never a lookup)."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise HTTPError(400, f"{name}: must be a UUID") from None


def path_id(request: Request, name: str) -> str:
    return uuid_field(request.path_params[name], name)


def query_id(request: Request, name: str) -> str:
    """An optional UUID query parameter ("" when absent)."""
    raw = request.query_params.get(name, "")
    return uuid_field(raw, name) if raw else ""
