"""The agent's outbox: durable until acknowledged, capped on disk, readable from another process."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

from agent.outbox import ROW_OVERHEAD, Outbox, StoredEvent


def _event(n: int, session: str = "s1", app: str = "Editor") -> StoredEvent:
    return StoredEvent(f"id-{n}", session, "active", 1_700_000_000.0 + n, 1, app, "", "")


def test_events_stay_until_removed_and_survive_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.append([_event(1), _event(2), _event(3)])
    assert [e.client_event_id for e in box.pending(10)] == ["id-1", "id-2", "id-3"]
    assert box.remove(["id-2"]) == 1
    box.close()
    again = Outbox(tmp_path / "o.sqlite3")
    assert [e.client_event_id for e in again.pending(10)] == ["id-1", "id-3"]
    assert again.pending(10)[0] == _event(1)  # every field round-trips


def test_a_resent_id_is_stored_once(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.append([_event(1)])
    box.append([_event(1)])
    assert box.depth() == 1
    assert box.counters()["stored_bytes"] == _event(1).size


def test_pending_is_per_session_oldest_first_and_skips_in_flight(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.append([_event(1, "a"), _event(2, "b"), _event(3, "a")])
    assert box.sessions() == ["a", "b"]
    assert [e.client_event_id for e in box.pending(10)] == ["id-1", "id-3"]
    assert [e.client_event_id for e in box.pending(10, exclude=["id-1"])] == ["id-3"]
    assert [e.client_event_id for e in box.pending(10, session_id="b")] == ["id-2"]
    assert [e.client_event_id for e in box.pending(1)] == ["id-1"]


def test_the_disk_cap_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    size = _event(0).size
    box = Outbox(tmp_path / "o.sqlite3", cap_bytes=size * 5)
    dropped = box.append([_event(n) for n in range(8)])
    assert dropped == 3
    assert [e.client_event_id for e in box.pending(10)] == [f"id-{n}" for n in range(3, 8)]
    counters = box.counters()
    assert counters["dropped_disk_cap"] == 3
    assert counters["stored_bytes"] == 5 * size
    box.remove(["id-3"])
    assert box.counters()["stored_bytes"] == 4 * size


def test_row_size_counts_text_bytes() -> None:
    assert StoredEvent("i", "s", "idle", 0.0, 1, "é", "ab", "").size == ROW_OVERHEAD + 2 + 2


def _write_forever(path: str) -> None:
    box = Outbox(Path(path))
    n = 0
    while True:
        box.append([_event(n)])
        n += 1


def test_rows_committed_before_a_kill_9_are_there_after(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    child = multiprocessing.get_context("spawn").Process(target=_write_forever, args=(str(path),))
    child.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if path.exists() and Outbox(path).depth() >= 200:
                break
            time.sleep(0.05)
    finally:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    box = Outbox(path)
    ids = [e.client_event_id for e in box.pending(100_000)]
    assert len(ids) >= 200
    assert ids == [f"id-{n}" for n in range(len(ids))]  # nothing torn, no gap
    assert box.counters()["stored_bytes"] == len(ids) * _event(0).size


def test_state_round_trips(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    assert box.get_state("k") is None
    box.put_state("k", {"a": [1, 2]})
    box.put_state("k", {"a": [3]})
    assert box.get_state("k") == {"a": [3]}
    box.delete_state("k")
    assert box.get_state("k") is None
