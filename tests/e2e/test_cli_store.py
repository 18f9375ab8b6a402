"""`syncd recount` as a real subprocess: counts edited by hand are rebuilt from the rows."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

from syncd.model import Change, Direction, EntryStatus, ObjectType
from syncd.store import SQLITE_FILENAME
from syncd.store.sqlite import SqliteStore


async def _seed(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        await store.enqueue(
            [
                Change(Direction.INBOUND, ObjectType.CONTACT, f"r{i}", "webhook", {"f": i})
                for i in range(3)
            ]
        )
    finally:
        await store.close()


async def _counts(path: Path) -> dict[tuple[Direction, EntryStatus], int]:
    store = SqliteStore(path)
    await store.open()
    try:
        return await store.counts()
    finally:
        await store.close()


def _syncd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args], capture_output=True, text=True, timeout=60
    )


def test_recount_rebuilds_counts_edited_by_hand(tmp_path: Path) -> None:
    db = tmp_path / SQLITE_FILENAME
    asyncio.run(_seed(db))
    with sqlite3.connect(db) as conn:  # an operator's hand edit leaves the counts wrong
        conn.execute("UPDATE queue_tallies SET n = 99")
    assert asyncio.run(_counts(db))[(Direction.INBOUND, EntryStatus.PENDING)] == 99
    config = tmp_path / "syncd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path}"\n')
    done = _syncd("recount", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "queue inbound pending: 3" in done.stdout
    assert asyncio.run(_counts(db)) == {(Direction.INBOUND, EntryStatus.PENDING): 3}


def test_recount_with_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text('[daemon]\nstore = "postgres"\n')
    done = _syncd("recount", "--config", str(config))
    assert done.returncode == 2
    assert "store" in done.stderr
