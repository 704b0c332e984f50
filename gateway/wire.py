"""Shapes shared by every route module: strict JSON bodies, UUIDs from paths and queries,
and timestamps written the way the original wrote them (ISO 8601, UTC, ``Z``)."""

from __future__ import annotations

import uuid
from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, field_validator
from starlette.requests import Request

from gateway.errors import HTTPError


class Body(BaseModel):
    """Strict: a number is not an email, a string is not a number; unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")

    @field_validator("*")
    @classmethod
    def _encodable(cls, value: object) -> object:
        # JSON may carry lone surrogates ("\ud800"), which protobuf strings cannot.
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode text") from None
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
