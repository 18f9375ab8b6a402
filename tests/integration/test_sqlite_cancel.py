"""A caller of the SQLite store cancelled mid-transaction: the transaction rolls back, and
the caller goes on only once it has ended (never while it may still commit)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncd.store.sql.dialect import Tx
from syncd.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state" / "syncd.sqlite3")
    await s.open()

    async def create(tx: Tx) -> None:
        await tx.execute("CREATE TABLE probe (k TEXT NOT NULL)")

    await s._run(create)
    try:
        yield s
    finally:
        await s.close()


def slow_insert(key: str, seconds: float, ran: threading.Event):
    """A transaction function that inserts `key`, then holds the store's thread."""

    async def fn(tx: Tx) -> None:
        ran.set()
        await tx.execute("INSERT INTO probe (k) VALUES (?)", (key,))
        time.sleep(seconds)  # noqa: ASYNC251 - runs on the store's thread, like a long statement

    return fn


async def probe_keys(store: SqliteStore) -> set[str]:
    async def read(tx: Tx) -> set[str]:
        return {r[0] for r in await tx.fetchall("SELECT k FROM probe")}

    return await store._run(read, write=False)


async def test_a_cancelled_running_transaction_rolls_back_before_the_caller_goes_on(
    store: SqliteStore,
) -> None:
    ran = threading.Event()
    task = asyncio.create_task(store._run(slow_insert("running", 0.3, ran)))
    await asyncio.to_thread(ran.wait, 10)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started >= 0.2  # it waited for the transaction to end
    assert await probe_keys(store) == set()


async def test_a_cancelled_queued_transaction_never_runs(store: SqliteStore) -> None:
    first_ran, second_ran = threading.Event(), threading.Event()
    first = asyncio.create_task(store._run(slow_insert("first", 0.2, first_ran)))
    await asyncio.to_thread(first_ran.wait, 10)
    second = asyncio.create_task(store._run(slow_insert("second", 0, second_ran)))
    await asyncio.sleep(0.02)  # handed to the store's thread, queued behind `first`
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    await first
    assert not second_ran.is_set()
    assert await probe_keys(store) == {"first"}
