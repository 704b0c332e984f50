"""The gateway's per-connection queue and frames, without I/O."""

from __future__ import annotations

import asyncio
import json

from gateway.realtime import Frame, Outbox, event_frame
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
