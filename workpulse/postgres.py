"""What a PostgreSQL client needs without SQLAlchemy: the roles, the libpq URL, a ping.

The gateway owns no tables; its ``/health`` only proves the database answers as the
runtime role, so it talks to psycopg directly and never loads SQLAlchemy (about a
quarter of an idle process's memory).
"""

from __future__ import annotations

import psycopg

RUNTIME_ROLE = "workpulse_app"
MAINTENANCE_ROLE = "workpulse_maintenance"


def libpq_url(url: str) -> str:
    """``url`` in the form libpq reads (SQLAlchemy's driver suffix removed)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    raise ValueError("not a PostgreSQL URL")


async def ping(url: str, *, role: str = RUNTIME_ROLE, timeout: float = 2.0) -> None:
    """One round trip on a fresh connection as ``role``; raises when the database does not
    answer within ``timeout`` seconds."""
    conn = await psycopg.AsyncConnection.connect(
        libpq_url(url), options=f"-c role={role}", connect_timeout=max(1, round(timeout)), autocommit=True
    )
    try:
        await conn.execute("select 1")
    finally:
        await conn.close()
