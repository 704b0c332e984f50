"""The agent's durable outbox: every event is on disk before it is sent, until it is acked.

SQLite in WAL mode in the agent's data folder. An event row is written when the event
is complete (and the event still being merged is kept in ``state``, rewritten as it
grows, so a ``kill -9`` loses at most one sample); it is deleted only when ingest's
acknowledgement of its batch says it was accepted, was a duplicate, or was refused for
good. After a crash, a reboot or a week offline the same rows are sent again with the
same client event ids, and the server counts each once.

The disk cap is kept on the rows' own size (their text plus a fixed overhead), counted
in the same transaction as each insert and delete, so checking it costs nothing; over
the cap, the oldest rows go first and ``dropped_disk_cap`` counts them.

Counters (dropped, refused by reason) live in the same file, so ``status`` reads them
while the agent runs, from another process.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Bytes a row costs beyond its text (ids, numbers, index entries), roughly as SQLite stores it.
ROW_OVERHEAD = 120
DEFAULT_CAP_BYTES = 200 * 1024 * 1024

_SCHEMA = """
create table if not exists events (
  seq integer primary key autoincrement,
  client_event_id text not null unique,
  session_id text not null,
  activity text not null check (activity in ('active', 'idle')),
  started_at real not null,
  duration integer not null,
  app text not null,
  title text not null,
  url text not null,
  size integer not null
);
-- A session's unsent events in order, read per batch without scanning the backlog.
create index if not exists events_by_session on events (session_id, seq);
create table if not exists counters (name text primary key, value integer not null);
create table if not exists state (key text primary key, value text not null);
"""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One complete activity event as the agent recorded it (already redacted)."""

    client_event_id: str
    session_id: str
    activity: str  # "active" | "idle"
    started_at: float  # epoch seconds
    duration: int  # whole seconds
    app: str
    title: str
    url: str

    @property
    def size(self) -> int:
        return ROW_OVERHEAD + len(self.app.encode()) + len(self.title.encode()) + len(self.url.encode())


class Outbox:
    """One SQLite file; safe to use from the agent's loop thread and read by ``status``."""

    def __init__(self, path: Path, cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.cap_bytes = cap_bytes
        # The loop thread writes; the collector's worker never touches the outbox. The lock
        # keeps a status read from another thread (tests) off a half-done transaction.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute("pragma journal_mode=wal")
        # NORMAL in WAL: a commit survives a crash of the agent (kill -9); only a power cut
        # can lose the last transactions, the price of not syncing every second.
        self._db.execute("pragma synchronous=normal")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("begin immediate")
            try:
                yield self._db
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit")

    # -- events ------------------------------------------------------------------------

    def append(self, events: Sequence[StoredEvent]) -> int:
        """Stores complete events (a resend of an id already stored is ignored); drops the
        oldest rows while over the cap. Returns how many rows the cap dropped."""
        if not events:
            return 0
        with self._transaction() as db:
            added = 0
            for e in events:
                cursor = db.execute(
                    "insert into events (client_event_id, session_id, activity, started_at, duration, app, title,"
                    " url, size) values (?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (client_event_id) do nothing",
                    (
                        e.client_event_id,
                        e.session_id,
                        e.activity,
                        e.started_at,
                        e.duration,
                        e.app,
                        e.title,
                        e.url,
                        e.size,
                    ),
                )
                if cursor.rowcount:
                    added += e.size
            _bump(db, "stored_bytes", added)
            return self._enforce_cap(db)

    def _enforce_cap(self, db: sqlite3.Connection) -> int:
        over = _read(db, "stored_bytes") - self.cap_bytes
        if over <= 0:
            return 0
        dropped = freed = 0
        last: int | None = None
        for seq, size in db.execute("select seq, size from events order by seq"):
            if freed >= over:
                break
            freed += size
            dropped += 1
            last = seq
        if last is None:
            return 0
        db.execute("delete from events where seq <= ?", (last,))
        _bump(db, "stored_bytes", -freed)
        _bump(db, "dropped_disk_cap", dropped)
        return dropped

    def pending(self, limit: int, exclude: Iterable[str] = (), session_id: str | None = None) -> list[StoredEvent]:
        """The oldest unacknowledged events of one session (the oldest's when unset),
        skipping ids already in flight."""
        skip = set(exclude)
        with self._lock:
            if session_id is None:
                first = self._db.execute("select session_id from events order by seq limit 1").fetchone()
                if first is None:
                    return []
                session_id = first[0]
            rows = self._db.execute(
                "select client_event_id, session_id, activity, started_at, duration, app, title, url from events"
                " where session_id = ? order by seq limit ?",
                (session_id, limit + len(skip)),
            ).fetchall()
        found = [StoredEvent(*row) for row in rows if row[0] not in skip]
        return found[:limit]

    def sessions(self) -> list[str]:
        """Sessions with unacknowledged events, oldest first."""
        with self._lock:
            rows = self._db.execute("select session_id, min(seq) from events group by session_id order by 2")
            return [r[0] for r in rows]

    def remove(self, client_event_ids: Iterable[str]) -> int:
        """Deletes acknowledged events; returns how many were there."""
        ids = list(client_event_ids)
        if not ids:
            return 0
        with self._transaction() as db:
            freed = removed = 0
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                freed += db.execute(
                    f"select coalesce(sum(size), 0) from events where client_event_id in ({marks})", chunk
                ).fetchone()[0]
                removed += db.execute(f"delete from events where client_event_id in ({marks})", chunk).rowcount
            _bump(db, "stored_bytes", -freed)
            return removed

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("select count(*) from events").fetchone()[0])

    # -- counters and state ------------------------------------------------------------

    def count(self, name: str, by: int = 1) -> None:
        with self._transaction() as db:
            _bump(db, name, by)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {name: value for name, value in self._db.execute("select name, value from counters")}

    def put_state(self, key: str, value: object) -> None:
        with self._lock:
            self._db.execute(
                "insert into state (key, value) values (?, ?) on conflict (key) do update set value = excluded.value",
                (key, json.dumps(value)),
            )

    def get_state(self, key: str) -> object | None:
        with self._lock:
            row = self._db.execute("select value from state where key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def delete_state(self, key: str) -> None:
        with self._lock:
            self._db.execute("delete from state where key = ?", (key,))


def _read(db: sqlite3.Connection, name: str) -> int:
    row = db.execute("select value from counters where name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def _bump(db: sqlite3.Connection, name: str, by: int) -> None:
    if by:
        db.execute(
            "insert into counters (name, value) values (?, ?)"
            " on conflict (name) do update set value = value + excluded.value",
            (name, by),
        )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
