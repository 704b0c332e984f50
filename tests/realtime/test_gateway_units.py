"""The gateway's per-connection queue and frames, without I/O."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest

from gateway.realtime_feed import Frame, Outbox, event_frame
from gateway.realtime_snapshot import session_update_payload
from services.sessions.domain import WorkSession
from services.sessions.messages import session_message
from workpulse.realtime.v1 import realtime_pb2 as pb


def test_event_frame_carries_payload_id_and_timestamp() -> None:
    data = {"sessionId": "s", "userId": "u", "total_active_seconds": 5}
    frame = event_frame(pb.Event(id="7-1", type="SESSION_UPDATE", timestamp="T", data_json=json.dumps(data)))
    assert json.loads(frame.text()) == {
        "event": "SESSION_UPDATE",
        "data": {**data, "id": "7-1", "timestamp": "T"},
        "id": "7-1",
    }


async def test_outbox_overflow_drops_the_backlog_for_one_resync() -> None:
    box = Outbox(capacity=3)
    box.put(Frame("SESSION_UPDATE", {"n": 0}, "0-0"))
    assert (await box.get()).id == "0-0"  # delivered
    for n in range(1, 6):
        box.put(Frame("SESSION_UPDATE", {"n": n}, f"{n}-0"))
    got = [await box.get() for _ in range(3)]
    assert [f.event for f in got] == ["resync", "SESSION_UPDATE", "SESSION_UPDATE"]
    assert got[0].data["lastId"] == "0-0"  # resume after it to replay what was dropped
    assert [f.data["n"] for f in got[1:]] == [4, 5]
    assert box.dropped == 3
    waiting = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    box.put(Frame("ping", {}))
    assert (await asyncio.wait_for(waiting, 1)).event == "ping"


@pytest.mark.parametrize("stopped", [False, True])
def test_the_snapshot_payload_is_the_one_sessions_publishes(stopped: bool) -> None:
    """The gateway builds the on-connect SESSION_UPDATE from the RPC's session; sessions
    builds relayed ones from its row: the same keys, values and formats."""
    start = datetime(2026, 3, 1, 9, 0, 0, 250_000, tzinfo=UTC)
    last = datetime(2026, 3, 1, 9, 59, 59, tzinfo=UTC)  # whole seconds: microseconds still written
    end = datetime(2026, 3, 1, 10, 0, 1, 5, tzinfo=UTC) if stopped else None
    session = WorkSession(
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        None if stopped else str(uuid.uuid4()),
        start,
        end,
        "stopped" if stopped else "active",
        3540,
        60,
        last,
        7,
    )
    payload = session_update_payload(session_message(session))
    assert payload == session.event_payload()
    assert payload["session"]["last_activity_at"] == "2026-03-01T09:59:59.000000Z"
