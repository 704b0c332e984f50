"""The events insert's columns, encoded for the server's cost and the client's.

psycopg's array dumpers loop in Python per element (a fifth of a microsecond per value,
twelve values per event: the hot path of a 500-event batch). Here timestamps, durations
and ids are laid out in PostgreSQL's binary array format by C-level operations (joins,
slice copies, array byte swaps) and passed through as they are; text columns are one
string each, split by the server (string_to_array) at a separator admission refuses in
any text. See the repository's _INSERT_EVENTS for how the statement reads them.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, cast

from psycopg import AsyncCursor, postgres
from psycopg.adapt import Dumper, PyFormat, Transformer
from psycopg.pq import Format

# Separates the values of a text column sent as one string.
SEP = "\x1f"
SEP_SQL = "E'\\x1f'"


class _Encoded:
    """A parameter already in PostgreSQL's binary array format (see _INSERT_EVENTS)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _EncodedStamps(_Encoded):
    __slots__ = ()


class _EncodedIntegers(_Encoded):
    __slots__ = ()


class _EncodedIds(_Encoded):
    __slots__ = ()


class _EncodedStampsDumper(Dumper):
    format = Format.BINARY
    oid = postgres.types["timestamptz"].array_oid

    def dump(self, obj: _Encoded) -> bytes:
        return obj.data


class _EncodedIntegersDumper(_EncodedStampsDumper):
    oid = postgres.types["int4"].array_oid


class _EncodedIdsDumper(_EncodedStampsDumper):
    oid = postgres.types["uuid"].array_oid


_TIMESTAMPTZ_OID = postgres.types["timestamptz"].oid
_INT4_OID = postgres.types["int4"].oid
_UUID_OID = postgres.types["uuid"].oid
# Random bytes to a version 4 UUID's: its version nibble, and its variant's two bits.
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT_RFC4122 = bytes((b & 0x3F) | 0x80 for b in range(256))
_ELEMENT_OF_8 = (8).to_bytes(4, "big")


def _array_head(element_oid: int, length: int) -> bytes:
    """One dimension of ``length`` elements, no NULLs, indexed from 1."""
    return struct.pack("!iiIii", 1, 0, element_oid, length, 1)


def stamps_array(cursor: AsyncCursor[Any], stamps: Sequence[datetime]) -> _EncodedStamps:
    """timestamptz[]: psycopg's own (C) dumper per element, the array around it here."""
    dumper = Transformer.from_context(cursor).get_dumper(stamps[0], PyFormat.BINARY)
    if dumper.oid != _TIMESTAMPTZ_OID:
        raise ValueError("timestamp: must be timezone-aware")
    # A datetime's binary dump is bytes (the annotation covers every dumper's).
    dump: Callable[[datetime], bytes] = dumper.dump  # type: ignore[assignment]
    return _EncodedStamps(
        _array_head(_TIMESTAMPTZ_OID, len(stamps)) + _ELEMENT_OF_8 + _ELEMENT_OF_8.join([dump(s) for s in stamps])
    )


def integers_array(values: Sequence[int]) -> _EncodedIntegers:
    """int4[] without a Python loop: each element is its length (4) then its value."""
    assert array("i").itemsize == 4
    body = array("i", bytes(8 * len(values)))
    body[0::2] = array("i", [4]) * len(values)
    body[1::2] = array("i", values)
    if sys.byteorder == "little":
        body.byteswap()
    return _EncodedIntegers(_array_head(_INT4_OID, len(values)) + body.tobytes())


def random_ids(count: int) -> _EncodedIds:
    """uuid[] of ``count`` random (version 4) UUIDs, the events' ids.

    Made here rather than by the column's default: gen_random_uuid costs the server about
    a microsecond per row (a call into OpenSSL's random generator each), a twentieth of
    the insert; one read of the operating system's generator for the batch costs nothing
    that shows, and the bytes are laid out (length 16, then the UUID) by slice copies."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT_RFC4122)
    body = bytearray(20 * count)
    body[3::20] = b"\x10" * count
    for k in range(16):
        body[4 + k :: 20] = raw[k::16]
    return _EncodedIds(_array_head(_UUID_OID, count) + bytes(body))


def joined(values: Sequence[str | None], column: str) -> str:
    """The column as one string for string_to_array (see the repository's _INSERT_EVENTS), NULL as ''."""
    try:
        joined = SEP.join(cast(Sequence[str], values))  # no NULL: no pass over the values
    except TypeError:
        joined = SEP.join(["" if v is None else v for v in values])
    if joined.count(SEP) != len(values) - 1:
        raise ValueError(f"{column}: control characters never reach the store (admission refuses them)")
    return joined


# An event's columns, in _INSERT_EVENTS' terms (insert_new transposes them).
COLUMNS = attrgetter(
    "timestamp",
    "activity_type",
    "duration_seconds",
    "app_name",
    "url",
    "screenshot_timestamp",
    "client_event_id",
    "match_any_timestamp",
    "client_chose_id",
    "title",
)


def register_dumpers(cursor: AsyncCursor[Any]) -> None:
    """Lets ``cursor`` pass the encoded arrays through as they are."""
    cursor.adapters.register_dumper(_EncodedStamps, _EncodedStampsDumper)
    cursor.adapters.register_dumper(_EncodedIntegers, _EncodedIntegersDumper)
    cursor.adapters.register_dumper(_EncodedIds, _EncodedIdsDumper)
