"""protobuf ``Timestamp`` ↔ aware ``datetime`` (UTC), fast enough for 100k-row streams."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def to_datetime(ts: Timestamp) -> datetime:
    return datetime.fromtimestamp(ts.seconds, UTC).replace(microsecond=ts.nanos // 1000)


def to_timestamp(moment: datetime) -> Timestamp:
    # The constructor runs in C; Timestamp.FromDatetime is Python arithmetic.
    return Timestamp(seconds=int(moment.timestamp()), nanos=moment.microsecond * 1000)
