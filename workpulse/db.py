"""Database access: one async engine per process and a tenant-scoped unit of work.

Isolation is enforced by PostgreSQL (ARCHITECTURE.md §2): every connection of the
runtime engine assumes the role ``workpulse_app``, which is subject to the row-level
security policies, and each transaction sets ``app.organization_id`` from the verified
token. The maintenance engine assumes ``workpulse_maintenance``, whose policies see
every tenant; only code paths reserved to service identities may use it.

How the tenant is set is a property of the deployment (``TENANT_SETTING``, read when an
engine is made): ``set_config`` (the default) sends ``select set_config(...)`` with the
id as a bind parameter; ``set_local`` sends ``SET LOCAL app.organization_id``, which is
what Citus propagates to the workers a transaction touches (with
``citus.propagate_set_commands = local``, which such engines set on every connection),
so the row-level security policies on the shards see the tenant too. Both last until
the transaction ends.
"""

from __future__ import annotations

import asyncio
import random
import select
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import ConnStatus, TransactionStatus
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from workpulse import telemetry
from workpulse.errors import Unavailable
from workpulse.postgres import RUNTIME_ROLE, libpq_url
from workpulse.settings import DatabaseSettings, TenantSetting

T = TypeVar("T")


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + libpq_url(url)[len("postgresql://") :]


def create_engine(
    url: str,
    *,
    role: str | None = RUNTIME_ROLE,
    pool_size: int = 10,
    max_overflow: int | None = None,
    tenant_setting: TenantSetting | None = None,
) -> AsyncEngine:
    """An engine whose every connection runs as ``role`` (None: as the URL's user).

    ``pool_size`` connections stay open when idle; bursts open up to ``max_overflow`` more
    (default: at least 10), closed again when returned, so idle replicas hold few.
    ``tenant_setting`` is how its transactions name their tenant (None: ``TENANT_SETTING``
    from the environment, see the module's docstring)."""
    mode = tenant_setting or DatabaseSettings().tenant_setting
    options = []
    if role is not None:
        options.append(f"-c role={role}")
    if mode == "set_local":
        # Citus propagates SET LOCAL to the workers only when asked to; plain PostgreSQL
        # takes the unknown name as a placeholder and ignores it.
        options.append("-c citus.propagate_set_commands=local")
    connect_args: dict[str, object] = {"options": " ".join(options)} if options else {}
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max(10, pool_size) if max_overflow is None else max_overflow,
        pool_pre_ping=False,  # replaced by _drop_dead_connection: no round trip per checkout
        pool_timeout=10,
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine.pool, "checkout", _drop_dead_connection)
    event.listen(engine.sync_engine.pool, "connect", lambda dbapi, record: _remember(dbapi, record, mode))
    if telemetry.sql_spans():
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine)
    return engine


def _drop_dead_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection whose server end is gone is replaced before use, without the
    round trip of SQLAlchemy's pre-ping (a fifth of a hot-path transaction's client CPU).

    An idle connection has nothing to read; when the server terminated it (a restart, a
    failover, ``pg_terminate_backend``), its socket is readable (the error message, then
    EOF) or already closed. One non-blocking poll finds both; the pool then opens a
    fresh connection in its place (SQLAlchemy retries the checkout on DisconnectionError).
    """
    conn: psycopg.AsyncConnection[Any] = dbapi_connection.driver_connection
    if conn.closed or conn.pgconn.status != ConnStatus.OK:
        raise DisconnectionError("connection closed")
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable:
        raise DisconnectionError("the server closed the connection")


_TRANSIENT = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and isinstance(exc.orig, _TRANSIENT)


# The tenant setting of each connection an engine of this module opened, so the switch
# functions, which get only a connection, send the form its engine was made for: in the
# pool record's ``info`` (what SQLAlchemy's connections expose, no I/O to reach) and by
# driver connection (all a direct transaction has; weak, so an entry goes with its
# connection). A connection made elsewhere uses set_config.
_TENANT_SETTING_KEY = "workpulse.tenant_setting"
_TENANT_SETTINGS: weakref.WeakKeyDictionary[object, TenantSetting] = weakref.WeakKeyDictionary()


def _remember(dbapi_connection: Any, record: Any, mode: TenantSetting) -> None:
    record.info[_TENANT_SETTING_KEY] = mode
    _TENANT_SETTINGS[dbapi_connection.driver_connection] = mode


_SET_CONFIG = "select set_config('app.organization_id', %s, true)"


def _set_local(organization_id: str) -> str:
    """``SET LOCAL`` naming the tenant. SET takes no bind parameter, so the id is written
    into the statement: it was validated upstream (it comes from a verified token), but
    it is parsed as a UUID again right here, so whatever reaches this line, the text
    interpolated is the canonical form (hex digits and hyphens only, nothing that could
    end the quoted literal); anything else raises ValueError before any SQL is sent."""
    return f"set local app.organization_id = '{uuid.UUID(organization_id)}'"


async def switch_tenant(conn: AsyncConnection, organization_id: str) -> None:
    """Points the open transaction at ``organization_id``: the statements after it see only
    that tenant's rows (one transaction serving a batch that spans organizations)."""
    if conn.info.get(_TENANT_SETTING_KEY) == "set_local":
        await conn.exec_driver_sql(_set_local(organization_id))
    else:
        await conn.execute(text("select set_config('app.organization_id', :org, true)"), {"org": organization_id})


DriverConnection = psycopg.AsyncConnection[Any]


async def direct_switch_tenant(conn: DriverConnection, organization_id: str) -> None:
    """:func:`switch_tenant` for a :meth:`UnitOfWork.direct` transaction."""
    if _TENANT_SETTINGS.get(conn) == "set_local":
        await conn.execute(_set_local(organization_id).encode())
    else:
        await conn.execute(_SET_CONFIG, [organization_id])


class UnitOfWork:
    """Owns transaction lifecycles so data functions never open or commit their own."""

    def __init__(self, engine: AsyncEngine, *, attempts: int = 4) -> None:
        self.engine = engine
        self._attempts = attempts

    @asynccontextmanager
    async def tenant(self, organization_id: str) -> AsyncIterator[AsyncConnection]:
        """A transaction that sees only ``organization_id``'s rows."""
        async with self.engine.begin() as conn:
            await switch_tenant(conn, organization_id)
            yield conn

    @asynccontextmanager
    async def unscoped(self) -> AsyncIterator[AsyncConnection]:
        """A transaction with no tenant: on the runtime role it sees no tenant rows at all;
        on the maintenance engine it sees every tenant."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def direct(self, organization_id: str | None) -> AsyncIterator[DriverConnection]:
        """A transaction on the driver (psycopg) connection itself, for the hottest paths.

        SQLAlchemy's per-statement work (compiling, execution context, result proxies,
        the greenlet hop) costs about twice the client CPU of the same statements sent by
        psycopg (measured: 1.5 vs 0.7 ms for a four-statement transaction). The tenant is
        set first, as in :meth:`tenant` (None: none, as :meth:`unscoped`). The connection
        comes from, and goes back to, the engine's pool; one left broken or mid-transaction
        is dropped instead. psycopg's errors surface as SQLAlchemy's ``DBAPIError``
        subclasses, so :meth:`retrying`, the interceptors and callers see one vocabulary.
        (psycopg's pipeline mode was measured too: in asyncio it costs an event-loop turn
        per statement, more than the round trips it saves.)
        """
        pooled = await self.engine.raw_connection()
        conn: DriverConnection = pooled.driver_connection  # type: ignore[assignment]
        try:
            async with conn.transaction():
                if organization_id is not None:
                    await direct_switch_tenant(conn, organization_id)
                yield conn
        except psycopg.Error as exc:
            raise DBAPIError.instance(None, None, exc, psycopg.Error) from exc
        finally:
            if conn.closed or conn.pgconn.transaction_status != TransactionStatus.IDLE:
                await greenlet_spawn(pooled.invalidate)
            await greenlet_spawn(pooled.close)

    async def retrying(self, work: Callable[[], Awaitable[T]]) -> T:
        """Runs ``work`` again on serialization failures and deadlocks, with jittered backoff."""
        for attempt in range(self._attempts):
            try:
                return await work()
            except DBAPIError as exc:
                if not is_transient(exc) or attempt == self._attempts - 1:
                    if is_transient(exc):
                        raise Unavailable("database contention, retry later") from exc
                    raise
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")
