"""SQLite's partial queue indexes (schema v7) still serve the store's own queries."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable
from pathlib import Path

from syncd.model import Change, Direction, ObjectType
from syncd.store.sqlite import SqliteStore
from syncd.store.types import EntryFilter


async def traced(store: SqliteStore, call: Awaitable[object]) -> list[str]:
    """The SELECTs on queue_entries that `await call` ran, with their values bound."""
    seen: list[str] = []
    conn = store._conn
    assert conn is not None
    await conn.set_trace_callback(seen.append)
    try:
        await call
    finally:
        await conn.set_trace_callback(None)
    return [s for s in seen if s.lstrip().upper().startswith("SELECT") and "queue_entries" in s]


def plan(path: Path, sql: str) -> str:
    with sqlite3.connect(path) as db:
        return " | ".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + sql))


async def test_reclaim_and_run_filter_use_their_partial_indexes(tmp_path: Path) -> None:
    path = tmp_path / "syncd.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        await store.enqueue(
            [
                Change(Direction.INBOUND, ObjectType.CONTACT, str(i), "webhook", {"n": i})
                for i in range(50)
            ]
        )
        with sqlite3.connect(path) as db:
            sql = {r[0]: r[1] for r in db.execute("SELECT name, sql FROM sqlite_master")}
        assert "ix_queue_health" not in sql
        assert "WHERE lease_expires_at IS NOT NULL" in sql["ix_queue_lease"]
        assert "WHERE run_id IS NOT NULL" in sql["ix_queue_run"]

        reclaim = await traced(store, store.reclaim_expired())
        by_run = await traced(store, store.list_entries(EntryFilter(run_id=7)))
        assert reclaim and by_run
        assert "INDEX ix_queue_lease (" in plan(path, reclaim[0])
        assert "INDEX ix_queue_run (" in plan(path, by_run[0])
    finally:
        await store.close()


async def test_record_breakdown_reads_only_its_partial_covering_index(tmp_path: Path) -> None:
    path = tmp_path / "syncd.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        with sqlite3.connect(path) as db:
            sql = {r[0]: r[1] for r in db.execute("SELECT name, sql FROM sqlite_master")}
        assert "WHERE status IN ('error', 'excluded')" in sql["ix_queue_bad"]
        queries = await traced(store, store.record_breakdown())
        assert len(queries) == 2
        for q in queries:
            assert "USING COVERING INDEX ix_queue_bad" in plan(path, q), plan(path, q)
    finally:
        await store.close()
