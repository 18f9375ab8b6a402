"""The embedded default store: one SQLite file in WAL mode, through aiosqlite.

One connection does everything, serialised by an asyncio.Lock: SQLite allows a single writer
anyway, and a write transaction that starts with ``BEGIN IMMEDIATE`` can never fail half-way
on a lock upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from syncd.errors import StoreError
from syncd.store.dialect import Dialect, Tx
from syncd.store.sql import SqlStore

T = TypeVar("T")

_BUSY_RETRIES = 5


class _SqliteTx:
    """The transaction handle over the single aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self._conn.execute(sql, tuple(params))
        n = cur.rowcount
        await cur.close()
        return n

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        cur = await self._conn.executemany(sql, [tuple(r) for r in rows])
        n = cur.rowcount
        await cur.close()
        return n

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows = await self._conn.execute_fetchall(sql, tuple(params))
        return [tuple(r) for r in rows]

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self._conn.execute(sql, tuple(params))
        rowid = cur.lastrowid
        await cur.close()
        if rowid is None:
            raise StoreError("sqlite store: insert returned no row id")
        return int(rowid)


class SqliteStore(SqlStore):
    """StateStore in one SQLite file (WAL, synchronous=FULL, foreign keys on)."""

    kind = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.dialect = Dialect("sqlite")
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the file (creating its directory), set pragmas and migrate."""
        if self._conn is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(str(self.path), isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"sqlite store: cannot open {self.path}: {exc}") from exc
        try:
            # WAL lets readers (CLI, backups) work beside the daemon; FULL makes each commit
            # durable before a webhook is acknowledged.
            for pragma in (
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=FULL",
                f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}",
                "PRAGMA foreign_keys=ON",
            ):
                await conn.execute(pragma)
        except sqlite3.Error as exc:
            await conn.close()
            raise StoreError(f"sqlite store: cannot configure {self.path}: {exc}") from exc
        self._conn = conn
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            async with self._lock:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await conn.close()

    async def _run(
        self, fn: Callable[[Tx], Awaitable[T]], *, write: bool = True, conflict_retry: bool = False
    ) -> T:
        """Run `fn` in one transaction under the connection lock."""
        for attempt in range(_BUSY_RETRIES):
            conn = self._conn
            if conn is None:
                raise StoreError("sqlite store is not open")
            try:
                async with self._lock:
                    return await self._transaction(conn, fn, write)
            except sqlite3.OperationalError as exc:
                # Another process (a CLI, a backup) held the file past busy_timeout.
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or attempt == _BUSY_RETRIES - 1:
                    raise StoreError(f"sqlite store: {exc}") from exc
            except sqlite3.IntegrityError as exc:
                if not conflict_retry or attempt == _BUSY_RETRIES - 1:
                    raise StoreError(f"sqlite store: {exc}") from exc
            except (sqlite3.Error, ValueError) as exc:
                # aiosqlite raises ValueError once its connection is closed.
                raise StoreError(f"sqlite store: {exc}") from exc
            await asyncio.sleep(0.05 * (attempt + 1))
        raise StoreError("sqlite store: retries exhausted")  # pragma: no cover

    @staticmethod
    async def _transaction(
        conn: aiosqlite.Connection, fn: Callable[[Tx], Awaitable[T]], write: bool
    ) -> T:
        await conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = await fn(_SqliteTx(conn))
            await conn.execute("COMMIT")
            return result
        except BaseException:
            # Also on cancellation: the connection is shared, never leave it mid-transaction.
            # Unconditional: a cancelled BEGIN may still be queued on aiosqlite's thread, and
            # requests run there in order, so this ROLLBACK always lands after it.
            with contextlib.suppress(sqlite3.Error, ValueError):
                await asyncio.shield(conn.execute("ROLLBACK"))
            raise
