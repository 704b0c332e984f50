"""Activity-log partitions: created ahead by the job through ingest's EnsurePartitions, and
dropped past the retention only when a retention is configured."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from tests.scheduler.conftest import Rig, World


def stamp(value: str) -> Timestamp:
    ts = Timestamp()
    ts.FromJsonString(value)
    return ts


async def partitions(world: World, prefix: str) -> list[str]:
    rows = await world.rows(
        "select relname from pg_class where relkind = 'r' and relname like :p order by relname", p=prefix + "%"
    )
    return [r[0] for r in rows]


async def test_partitions_ahead_and_retention(rig: Rig, world: World) -> None:
    # Far in the past, so dropping can only touch this test's partitions.
    created, dropped = await rig.peers.ensure_partitions(datetime(2019, 3, 1, tzinfo=UTC), 2, 0)
    assert created == ["activity_logs_p20190301", "activity_logs_p20190302", "activity_logs_p20190303"]
    assert dropped == []
    assert await rig.peers.ensure_partitions(datetime(2019, 3, 1, tzinfo=UTC), 2, 0) == ([], [])  # idempotent
    # Retention of 10 days on 2019-03-13: partitions that end by 2019-03-03 go.
    created, dropped = await rig.peers.ensure_partitions(datetime(2019, 3, 13, tzinfo=UTC), 0, 10)
    assert created == ["activity_logs_p20190313"]
    assert dropped == ["activity_logs_p20190301", "activity_logs_p20190302"]
    assert await partitions(world, "activity_logs_p201903") == ["activity_logs_p20190303", "activity_logs_p20190313"]
