"""The shared store: MySQL/MariaDB (InnoDB, utf8mb4) through an aiomysql pool.

Several daemon instances may use one database. Every call is one explicit transaction on a
pooled connection in READ COMMITTED; deadlocks and lock wait timeouts are retried, and so is
a connection lost *before* COMMIT was sent (nothing was committed), which is how the store
recovers by itself after a server restart or a killed session.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiomysql
import pymysql
from pymysql.constants import CLIENT

from syncd.config import MysqlDsn
from syncd.errors import StoreError
from syncd.store.sql import SqlStore
from syncd.store.sql.dialect import Dialect, Tx

T = TypeVar("T")

_DEADLOCK, _LOCK_WAIT, _DUPLICATE = 1213, 1205, 1062
# Server gone / lost during query / killed / disconnected for inactivity.
_LOST = frozenset({0, 1927, 2006, 2013, 2014, 2055, 4031})


def _code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


class _MysqlTx:
    """The transaction handle over one pooled connection's cursor."""

    def __init__(self, cur: Any, dialect: Dialect) -> None:
        self._cur = cur
        self._sql = dialect.sql

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(await self._cur.execute(self._sql(sql), tuple(params) if params else None))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        n = await self._cur.executemany(self._sql(sql), [tuple(r) for r in rows])
        return int(n or 0)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        await self._cur.execute(self._sql(sql), tuple(params) if params else None)
        return [tuple(r) for r in await self._cur.fetchall()]

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        await self._cur.execute(self._sql(sql), tuple(params) if params else None)
        return int(self._cur.lastrowid)


class _Attempt(Exception):
    """A failed transaction attempt: the cause, and whether COMMIT had been sent."""

    def __init__(self, cause: BaseException, committing: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.committing = committing


class MysqlStore(SqlStore):
    """StateStore in a MySQL/MariaDB database, safe to share between daemon instances."""

    kind = "mysql"

    def __init__(
        self,
        dsn: str,
        *,
        minsize: int = 1,
        maxsize: int = 10,
        connect_timeout: float = 5.0,
        retries: int = 5,
        migrate_lock_timeout: int = 60,
    ) -> None:
        self.dialect = Dialect("mysql")
        try:
            self._dsn = MysqlDsn.parse(dsn)
        except ValueError as exc:
            raise StoreError(f"mysql store: the DSN {exc}") from None
        self._minsize, self._maxsize = minsize, maxsize
        self._connect_timeout = connect_timeout
        self._retries = max(retries, 1)
        self._migrate_lock_timeout = migrate_lock_timeout
        self._pool: Any = None

    @property
    def database(self) -> str:
        """The database name (no credentials)."""
        return self._dsn.database

    def _describe(self, exc: BaseException) -> str:
        """A driver error as text that never carries the password."""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._dsn.password:
            text = text.replace(self._dsn.password, "***")
        where = f"{self._dsn.host}:{self._dsn.port}/{self._dsn.database}"
        return f"mysql store ({where}): {text}"

    async def open(self) -> None:
        """Create the pool and migrate under a server-wide GET_LOCK."""
        if self._pool is not None:
            return
        d = self._dsn
        try:
            pool = await aiomysql.create_pool(
                host=d.host,
                port=d.port,
                user=d.user,
                password=d.password,
                db=d.database,
                minsize=self._minsize,
                maxsize=self._maxsize,
                autocommit=False,
                charset="utf8mb4",
                connect_timeout=self._connect_timeout,
                # Rows *matched*, not changed: an UPDATE's count says whether the guard held.
                client_flag=CLIENT.FOUND_ROWS,
                init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                pool_recycle=3600,
            )
        except (pymysql.err.Error, OSError, TimeoutError) as exc:
            raise StoreError(self._describe(exc)) from exc
        self._pool = pool
        try:
            await self._locked_migrate()
        except BaseException:
            await self.close()
            raise

    async def _locked_migrate(self) -> None:
        # GET_LOCK belongs to a session: hold it on one dedicated connection while the
        # migration steps run on others; two instances starting together migrate in turn.
        name = f"syncd-migrate:{self._dsn.database}"[:64]
        try:
            conn = await self._pool.acquire()
        except (pymysql.err.Error, OSError, TimeoutError) as exc:
            raise StoreError(self._describe(exc)) from exc
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT GET_LOCK(%s, %s)", (name, self._migrate_lock_timeout))
                got = (await cur.fetchone())[0]
            await conn.commit()
            if got != 1:
                raise StoreError("mysql store: another instance is still migrating the schema")
            try:
                # "Table already exists" notes from IF NOT EXISTS are expected, not news.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", pymysql.Warning)
                    await self._migrate()
            finally:
                async with conn.cursor() as cur:
                    await cur.execute("SELECT RELEASE_LOCK(%s)", (name,))
                await conn.commit()
        except (pymysql.err.Error, OSError, TimeoutError) as exc:
            conn.close()
            raise StoreError(self._describe(exc)) from exc
        finally:
            self._pool.release(conn)

    async def close(self) -> None:
        """Close the pool; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            with contextlib.suppress(Exception):
                await pool.wait_closed()

    async def _run(
        self, fn: Callable[[Tx], Awaitable[T]], *, write: bool = True, conflict_retry: bool = False
    ) -> T:
        """Run `fn` in one transaction; retry what is safe to retry, else raise StoreError."""
        last: BaseException | None = None
        for attempt in range(self._retries):
            pool = self._pool
            if pool is None:
                raise StoreError("mysql store is not open")
            try:
                return await self._attempt(pool, fn)
            except _Attempt as failed:
                exc = failed.cause
                last = exc
                code = _code(exc)
                transient = code in (_DEADLOCK, _LOCK_WAIT) or (
                    conflict_retry and code == _DUPLICATE
                )
                lost = (
                    isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError)
                    and code in _LOST
                ) or isinstance(exc, ConnectionError)
                if not (transient or (lost and not failed.committing)):
                    raise StoreError(self._describe(exc)) from exc
            await asyncio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
        assert last is not None
        raise StoreError(self._describe(last)) from last

    async def _attempt(self, pool: Any, fn: Callable[[Tx], Awaitable[T]]) -> T:
        try:
            conn = await pool.acquire()
        except (pymysql.err.Error, OSError, TimeoutError) as exc:
            # Connecting failed: nothing was sent, so a lost-style error may be retried.
            raise _Attempt(exc, committing=False) from exc
        committing = False
        try:
            # No BEGIN: with autocommit off the first statement opens the transaction, and
            # the round trip it cost was a sixth of an intake commit's.
            async with conn.cursor() as cur:
                result = await fn(_MysqlTx(cur, self.dialect))
            committing = True
            await conn.commit()
            return result
        except (pymysql.err.Error, OSError, TimeoutError) as exc:
            if _code(exc) in (_DEADLOCK, _LOCK_WAIT, _DUPLICATE) and not committing:
                try:
                    await conn.rollback()
                except (pymysql.err.Error, OSError):
                    conn.close()
            else:
                conn.close()
            raise _Attempt(exc, committing) from exc
        except BaseException:
            # Cancelled mid-statement or a bug: the session state is unknown, drop it.
            conn.close()
            raise
        finally:
            pool.release(conn)
