"""The embedded default store: one SQLite file in WAL mode, through aiosqlite.

One connection does everything: SQLite allows a single writer anyway, and a write
transaction that starts with ``BEGIN IMMEDIATE`` can never fail half-way on a lock upgrade.
Each transaction runs whole (BEGIN to COMMIT) as one function on aiosqlite's thread, which
runs them one after the other in the order they were handed over; that order is what
serialises them, so a caller may hand one over while another is still running (see
`SqliteStore._run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiosqlite

from syncd.errors import StoreError, StoreUnusable
from syncd.store.sql import SqlStore
from syncd.store.sql.dialect import Dialect, Tx
from syncd.store.types import ChangeFeed, FeedBatch

T = TypeVar("T")

_BUSY_RETRIES = 5
_PLAIN_INSERT = re.compile(r"^INSERT INTO \w+ \([\w, ]+\) VALUES (\((?:\?, )*\?\))$")
_ROWS_PER_INSERT = 500
_MAX_PARAMS = 30_000  # SQLite allows 32,766 bound parameters per statement


class _SqliteTx:
    """The transaction handle, used on aiosqlite's thread: every call completes at once."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        values = _PLAIN_INSERT.match(sql)
        if values is None or len(rows) == 1:
            return self._conn.executemany(sql, [tuple(r) for r in rows]).rowcount
        # A plain INSERT becomes multi-row statements (as aiomysql does for MySQL): one step
        # per chunk instead of one per row, and every step hands the GIL over once.
        group = values.group(1)
        per = max(1, min(_ROWS_PER_INSERT, _MAX_PARAMS // max(1, group.count("?"))))
        n = 0
        for i in range(0, len(rows), per):
            part = rows[i : i + per]
            text = sql + f", {group}" * (len(part) - 1)  # `sql` has the first row's group
            n += self._conn.execute(text, list(chain.from_iterable(part))).rowcount
        return n

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._conn.execute(sql, tuple(params)).fetchall()
        return rows  # already tuples: no row_factory is set

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        rowid = self._conn.execute(sql, tuple(params)).lastrowid
        if rowid is None:
            raise StoreError("sqlite store: insert returned no row id")
        return int(rowid)


class _Transaction(Generic[T]):
    """One transaction function run to its end on the connection's thread, in one hop.

    aiosqlite hops to its thread and back once per statement; an intake commit has eight
    statements, and every hop is a GIL hand-over that stalls the event loop serving the
    webhooks. Here the store's (async) transaction function is driven on that thread instead:
    its awaits are all `_SqliteTx` calls, which finish without suspending.
    """

    def __init__(self, fn: Callable[[Tx], Awaitable[T]], write: bool) -> None:
        self.fn = fn
        self.write = write
        self.abandoned = False  # the caller was cancelled: roll back rather than commit
        self._lock = threading.Lock()
        self._ended = False
        self._on_end: Callable[[], object] | None = None

    def __call__(self, conn: sqlite3.Connection) -> T:
        try:
            if self.abandoned:
                raise asyncio.CancelledError  # cancelled before it started: do nothing
            conn.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")
            try:
                result = _drive(self.fn(_SqliteTx(conn)))
                if self.abandoned:
                    raise asyncio.CancelledError
                conn.execute("COMMIT")
                return result
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        finally:
            with self._lock:
                self._ended = True
                on_end = self._on_end
            if on_end is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                    on_end()

    def abandon(self, on_end: Callable[[], object]) -> bool:
        """Roll back instead of committing; `on_end` is called (on the store's thread) once
        the transaction has ended. False if it had ended already (`on_end` is not called)."""
        with self._lock:
            if self._ended:
                return False
            self.abandoned = True
            self._on_end = on_end
            return True


def _drive(coro: Awaitable[T]) -> T:
    """Run a coroutine that never suspends to its result (off the event loop)."""
    gen = coro.__await__()
    try:
        gen.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    gen.close()
    raise RuntimeError("a store transaction awaited something other than its statements")


class SqliteStore(SqlStore):
    """StateStore in one SQLite file (WAL, synchronous=FULL, foreign keys on)."""

    kind = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.dialect = Dialect("sqlite")
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Open the file (creating its directory), set pragmas and migrate."""
        if self._conn is not None:
            return
        existed = self.path.exists()
        if existed and self.path.stat().st_size == 0:
            # A store that held acknowledged changes and is now empty is not a new store.
            raise StoreUnusable(
                f"sqlite store: {self.path} exists but is empty (0 bytes): it is not started"
                " afresh, which would lose what it held; restore it from a backup, or move it"
                " away to start a new store"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(str(self.path), isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"sqlite store: cannot open {self.path}: {exc}") from exc
        if existed:
            await self._check_is_ours(conn)
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
            if existed and ("not a database" in str(exc) or "malformed" in str(exc)):
                raise StoreUnusable(
                    f"sqlite store: {self.path} is damaged or not a store ({exc}); restore it"
                    " from a backup, or move it away to start a new store"
                ) from exc
            raise StoreError(f"sqlite store: cannot configure {self.path}: {exc}") from exc
        self._conn = conn
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _check_is_ours(self, conn: aiosqlite.Connection) -> None:
        """A file that was there must be a syncd store: readable, with its version table.
        Checked before any pragma, which would rewrite a foreign file's header."""
        try:
            async with conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ) as cur:
                ours = await cur.fetchone() is not None
        except sqlite3.Error as exc:
            await conn.close()
            raise StoreUnusable(
                f"sqlite store: {self.path} cannot be read as a store ({exc}); restore it from"
                " a backup, or move it away to start a new store"
            ) from exc
        if not ours:
            await conn.close()
            raise StoreUnusable(
                f"sqlite store: {self.path} is not a syncd store (no schema_version table);"
                " move it away, or point daemon.state_dir elsewhere"
            )

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            # Queued behind the transactions already handed over: they finish first.
            with contextlib.suppress(sqlite3.Error, ValueError):
                await conn.close()

    async def _run(
        self, fn: Callable[[Tx], Awaitable[T]], *, write: bool = True, conflict_retry: bool = False
    ) -> T:
        """Run `fn` in one transaction on the connection's thread.

        No lock: transactions queue on that thread and each runs whole, so the next one
        starts as soon as the previous one has committed, without a round trip through the
        event loop in between (what lets the intake pipeline its group commits).
        """
        for attempt in range(_BUSY_RETRIES):
            conn = self._conn
            if conn is None:
                raise StoreError("sqlite store is not open")
            txn = _Transaction(fn, write)
            try:
                return await self._in_thread(conn, txn)
            except (sqlite3.Error, ValueError) as exc:
                # aiosqlite raises ValueError once its connection is closed.
                last = attempt == _BUSY_RETRIES - 1
                error = _give_up(exc, conflict_retry=conflict_retry, last=last)
                if error is not None:
                    raise error from exc
            await asyncio.sleep(_retry_delay(attempt))
        raise StoreError("sqlite store: retries exhausted")  # pragma: no cover

    async def enqueue_stream(self, feed: ChangeFeed) -> None:
        """Commit `feed`'s batches on the connection's thread, back to back.

        The next batch starts the moment the last one has committed, while the event loop
        answers that one's senders: a round trip through a busy loop between two commits
        left the store idle for most of each cycle (bench/intake.py). After each batch the
        stream gives way to other work queued for the thread (API reads, flush claims).
        """
        conn = self._conn
        if conn is None or not _is_open(conn):
            await super().enqueue_stream(feed)  # each batch fails as enqueue would
            return
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        ended: asyncio.Future[None] = loop.create_future()

        def settle(batch: FeedBatch, error: StoreError | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(feed.settled, batch, error)

        def stream(db: sqlite3.Connection) -> None:
            try:
                while not stop.is_set():
                    batch = feed.take()
                    if batch is None:
                        return
                    try:
                        self._commit_here(db, self.enqueue_op(batch.changes, ids=False))
                    except StoreError as exc:
                        settle(batch, exc)
                    except BaseException:
                        settle(batch, StoreError("sqlite store: the intake commit failed"))
                        raise
                    else:
                        settle(batch, None)
                    if not conn._tx.empty():
                        return  # other work waits for this thread: it goes first
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_set_done, ended)

        done: asyncio.Future[None] = loop.create_future()
        conn._tx.put_nowait((done, functools.partial(stream, conn._conn)))
        try:
            await done
        except asyncio.CancelledError:
            # The batch being committed is not cut short (it may be durable already): the
            # stream stops after it, and the caller goes on once it has.
            stop.set()
            with contextlib.suppress(BaseException):
                await ended
            raise

    @staticmethod
    def _commit_here(db: sqlite3.Connection, fn: Callable[[Tx], Awaitable[Any]]) -> None:
        """Run write transaction `fn` on the connection's own thread, retried as in `_run`."""
        for attempt in range(_BUSY_RETRIES):
            try:
                _Transaction(fn, write=True)(db)
                return
            except sqlite3.Error as exc:
                error = _give_up(exc, conflict_retry=True, last=attempt == _BUSY_RETRIES - 1)
                if error is not None:
                    raise error from exc
            time.sleep(_retry_delay(attempt))  # the store's thread: nothing else runs on it

    @staticmethod
    async def _in_thread(conn: aiosqlite.Connection, txn: _Transaction[T]) -> T:
        # aiosqlite runs the functions on its queue on the connection's thread, in order;
        # the public API offers that per statement only (see _Transaction). Queued here as
        # its _execute does, but at once: through a task, the thread got the transaction
        # only after the event loop's next round (a wait as long as that round, when busy).
        if not _is_open(conn):
            raise ValueError("Connection closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        conn._tx.put_nowait((fut, functools.partial(txn, conn._conn)))
        try:
            # Awaited bare, not shielded: a shield costs one more event-loop round between
            # the commit and its caller, which the intake pays once per group commit.
            return await fut
        except asyncio.CancelledError:
            # Roll back rather than commit if it has not ended yet, and wait for it: the
            # caller must not go on while its transaction may still commit.
            ended: asyncio.Future[None] = loop.create_future()
            if txn.abandon(lambda: loop.call_soon_threadsafe(_set_done, ended)):
                with contextlib.suppress(BaseException):
                    await ended
            raise


def _is_open(conn: aiosqlite.Connection) -> bool:
    """Whether aiosqlite's thread still takes work (it stops once the connection closes)."""
    return bool(conn._running) and conn._connection is not None


def _give_up(exc: Exception, *, conflict_retry: bool, last: bool) -> StoreError | None:
    """The StoreError a failed transaction ends with, or None: try it again."""
    if isinstance(exc, sqlite3.OperationalError):
        # Another process (a CLI, a backup) held the file past busy_timeout.
        retry = "locked" in str(exc) or "busy" in str(exc)
    else:
        retry = conflict_retry and isinstance(exc, sqlite3.IntegrityError)
    return None if retry and not last else StoreError(f"sqlite store: {exc}")


def _retry_delay(attempt: int) -> float:
    return 0.05 * (attempt + 1)


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
