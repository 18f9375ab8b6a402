"""The MySQL store shared by several instances, and its behaviour when the server misbehaves."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiomysql
import pytest

from syncd.config import MysqlDsn
from syncd.errors import StoreError
from syncd.model import Change, Direction, EntryStatus, ObjectType
from syncd.store.mysql import MysqlStore
from syncd.store.sql.dialect import Tx
from syncd.store.sql.migrations import LATEST_VERSION

IN = Direction.INBOUND


def change(key: str, **fields: object) -> Change:
    return Change(IN, ObjectType.CONTACT, key, "webhook", fields)


@pytest.fixture
async def two_stores(mysql_database: str) -> AsyncIterator[tuple[MysqlStore, MysqlStore]]:
    """Two instances (two pools) on one database, opened concurrently."""
    a, b = MysqlStore(mysql_database), MysqlStore(mysql_database)
    await asyncio.gather(a.open(), b.open())  # GET_LOCK serialises the migrations
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_concurrent_open_migrates_once(two_stores: tuple[MysqlStore, MysqlStore]) -> None:
    a, b = two_stores
    assert await a.schema_version() == await b.schema_version() == LATEST_VERSION


async def test_two_claimers_never_share_an_entry(two_stores: tuple[MysqlStore, MysqlStore]) -> None:
    a, b = two_stores
    for start in range(0, 2000, 500):
        await a.enqueue([change(f"r{i}", v=i) for i in range(start, start + 500)])

    async def worker(store: MysqlStore, owner: str) -> list[int]:
        got: list[int] = []
        while True:
            batch = await store.claim_pending(IN, limit=25, owner=owner, lease_seconds=60)
            if not batch:
                return got
            assert all(e.lease_owner == owner for e in batch)
            got += [e.id for e in batch]

    claimed = await asyncio.gather(
        worker(a, "a1"), worker(a, "a2"), worker(b, "b1"), worker(b, "b2")
    )
    flat = [i for ids in claimed for i in ids]
    assert len(flat) == len(set(flat)) == 2000
    assert (await a.counts())[(IN, EntryStatus.PROCESSING)] == 2000
    assert (await b.pending_stats(IN)).count == 0


async def test_concurrent_enqueues_of_one_record_keep_one_pending_entry(
    two_stores: tuple[MysqlStore, MysqlStore],
) -> None:
    a, b = two_stores
    jobs = [
        (a if i % 2 else b).enqueue([change(f"k{i % 5}", **{f"f{i}": i}), change("shared", n=i)])
        for i in range(60)
    ]
    results = await asyncio.gather(*jobs)
    shared_ids = {ids[1] for ids in results}
    assert len(shared_ids) == 1
    entry = await a.get_entry(shared_ids.pop())
    assert entry is not None and entry.changed_fields == {"n"}
    assert (await a.pending_stats(IN)).count == 6
    for k in range(5):
        found = await a.pending_entries(IN, [f"k{k}"])
        assert set(found[f"k{k}"].payload) == {f"f{i}" for i in range(60) if i % 5 == k}


async def test_enqueue_races_claims_without_losing_changes(
    two_stores: tuple[MysqlStore, MysqlStore],
) -> None:
    a, b = two_stores
    claimed: list[int] = []
    done = asyncio.Event()

    async def claimer() -> None:
        while not done.is_set():
            batch = await b.claim_pending(IN, limit=10, owner="b", lease_seconds=60)
            claimed.extend(e.id for e in batch)
            for e in batch:
                assert await b.complete(e.id, owner="b", transferred=dict(e.payload))
            await asyncio.sleep(0)

    task = asyncio.create_task(claimer())
    for i in range(200):
        await a.enqueue([change(f"r{i % 7}", seq=i)])
    done.set()
    await task
    rest = await a.claim_pending(IN, limit=100, owner="a", lease_seconds=60)
    # every change reached an entry that was either processed or is still to be processed
    entries = [await a.get_entry(i) for i in claimed] + list(rest)
    seqs = {e.payload["seq"] for e in entries if e is not None}
    last_per_record = {max(i for i in range(200) if i % 7 == k) for k in range(7)}
    assert last_per_record <= seqs


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_server_raises_store_error_without_password() -> None:
    store = MysqlStore(f"mysql://syncd:s3cr3t-pw@127.0.0.1:{_closed_port()}/nowhere")
    with pytest.raises(StoreError) as info:
        await store.open()
    assert "s3cr3t-pw" not in str(info.value)
    assert "s3cr3t-pw" not in repr(info.value.__cause__)
    with pytest.raises(StoreError):
        await store.ping()  # never opened: still a StoreError, not a driver error
    await store.close()


async def test_bad_dsn_is_a_store_error_without_the_dsn() -> None:
    with pytest.raises(StoreError) as info:
        MysqlStore("postgres://u:pw-123@h/db")
    assert "pw-123" not in str(info.value)


async def test_driver_errors_become_store_errors(mysql_database: str) -> None:
    store = MysqlStore(mysql_database)
    await store.open()
    try:

        async def broken(tx: object) -> None:
            await tx.execute("SELECT * FROM no_such_table")  # type: ignore[attr-defined]

        with pytest.raises(StoreError):
            await store._run(broken)
        await store.ping()  # the pool is still healthy
    finally:
        await store.close()


async def _kill_sessions(dsn: str) -> int:
    """KILL every connection of the store's database from another connection."""
    d = MysqlDsn.parse(dsn)
    admin = await aiomysql.connect(
        host=d.host, port=d.port, user=d.user, password=d.password, autocommit=True
    )
    try:
        async with admin.cursor() as cur:
            await cur.execute(
                "SELECT id FROM information_schema.PROCESSLIST"
                " WHERE db = %s AND id <> CONNECTION_ID()",
                (d.database,),
            )
            ids = [r[0] for r in await cur.fetchall()]
            for cid in ids:
                await cur.execute(f"KILL {int(cid)}")
        return len(ids)
    finally:
        admin.close()


async def test_store_recovers_after_its_connections_are_killed(mysql_database: str) -> None:
    store = MysqlStore(mysql_database, maxsize=3)
    await store.open()
    try:
        # warm several pooled connections
        await asyncio.gather(*(store.enqueue([change(f"w{i}", v=i)]) for i in range(6)))
        assert await _kill_sessions(mysql_database) >= 1
        await asyncio.sleep(0.05)
        ids = await store.enqueue([change("after-kill", v=1)])
        assert (await store.get_entry(ids[0])) is not None
        assert await _kill_sessions(mysql_database) >= 1
        # no pause this time: the dead session may be handed out before its EOF is seen
        assert (await store.pending_stats(IN)).count == 7
        await store.ping()
    finally:
        await store.close()


async def test_session_killed_mid_transaction_is_retried_on_a_new_connection(
    mysql_database: str,
) -> None:
    store = MysqlStore(mysql_database)
    await store.open()
    d = MysqlDsn.parse(mysql_database)
    admin = await aiomysql.connect(host=d.host, port=d.port, user=d.user, password=d.password)
    sessions: list[int] = []

    async def op(tx: Tx) -> None:
        [(cid,)] = await tx.fetchall("SELECT CONNECTION_ID()")
        sessions.append(int(cid))
        if len(sessions) == 1:
            async with admin.cursor() as cur:
                await cur.execute(f"KILL {int(cid)}")
        await tx.execute(
            "INSERT INTO cursors (name, cursor_value, updated_at) VALUES (?, ?, ?)",
            ("k", "v", store.dialect.ts(datetime.now(UTC))),
        )

    try:
        await store._run(op)  # nothing was committed when the session died: safe to re-run
        assert len(sessions) == 2 and sessions[0] != sessions[1]
        assert await store.get_cursor("k") == "v"
    finally:
        admin.close()
        await store.close()
