"""The intake's group commits, pipelined, against SQLite and the real MariaDB."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncd.errors import StoreError
from syncd.model import Change, Direction, EntryStatus, ObjectType
from syncd.store.mysql import MysqlStore
from syncd.store.sql import SqlStore
from syncd.store.sql.queue import stream_batches
from syncd.store.sqlite import SqliteStore
from syncd.store.types import ChangeFeed, FeedBatch
from syncd.sync.intake import InboundIntake

IN = Direction.INBOUND


@pytest.fixture(params=["sqlite", "mysql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(backend, where): a fresh SQLite file or a fresh MariaDB database."""
    if request.param == "mysql":
        return "mysql", str(request.getfixturevalue("mysql_database"))
    return "sqlite", str(tmp_path / "state" / "syncd.sqlite3")


@pytest.fixture
async def store(target: tuple[str, str]) -> AsyncIterator[SqlStore]:
    kind, where = target
    s: SqlStore = MysqlStore(where) if kind == "mysql" else SqliteStore(where)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def intake(store: SqlStore) -> AsyncIterator[InboundIntake]:
    # Small batches: many batches, each taken while the last one commits.
    it = InboundIntake(store, max_batch=7)
    writer = asyncio.create_task(it.run())
    try:
        yield it
    finally:
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer


def change(key: str, n: int) -> Change:
    return Change(IN, ObjectType.CONTACT, key, "webhook", {"n": n, f"f{n}": True})


async def test_concurrent_submissions_coalesce_in_arrival_order(
    store: SqlStore, intake: InboundIntake
) -> None:
    # 300 submissions over 20 records, all at once: every record's entry ends with the
    # values of its last submission and the fields of all of them.
    subs = [change(f"r{i % 20}", i) for i in range(300)]
    await asyncio.gather(*(intake.submit([c]) for c in subs))
    entries = await store.pending_entries(IN, [f"r{k}" for k in range(20)])
    assert len(entries) == 20
    for k in range(20):
        mine = [i for i in range(300) if i % 20 == k]
        e = entries[f"r{k}"]
        assert e.payload["n"] == mine[-1]
        assert all(e.payload[f"f{i}"] is True for i in mine)
        assert e.changed_fields == {"n", *(f"f{i}" for i in mine)}
    counts = await store.counts()
    assert counts == {(IN, EntryStatus.PENDING): 20}
    tallies = await store.queue_tallies()
    assert tallies == {("contact", "inbound", "pending", "", ""): 20}


async def test_a_cancelled_sender_still_has_its_change_committed(
    store: SqlStore, intake: InboundIntake
) -> None:
    first = asyncio.create_task(intake.submit([change("a", 1)]))
    second = asyncio.create_task(intake.submit([change("b", 2)]))
    await asyncio.sleep(0)  # both are waiting for the writer
    first.cancel()
    await second
    with pytest.raises(asyncio.CancelledError):
        await first
    await intake.submit([change("c", 3)])  # committed after both batches above
    assert set(await store.pending_entries(IN, ["a", "b", "c"])) == {"a", "b", "c"}


async def test_store_failure_answers_the_senders_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "state" / "syncd.sqlite3")
    await store.open()
    it = InboundIntake(store)
    writer = asyncio.create_task(it.run())
    try:
        await it.submit([change("a", 1)])
        await store.close()
        with pytest.raises(StoreError):
            await it.submit([change("b", 2)])
        await store.open()
        await it.submit([change("c", 3)])
        assert not writer.done()
        assert set(await store.pending_entries(IN, ["a", "b", "c"])) == {"a", "c"}
    finally:
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
        await store.close()


class GatedStore:
    """The real store, logging each batch handed to it; the first batch waits for `gate`."""

    def __init__(self, inner: SqlStore, log: list[tuple[str, str]]) -> None:
        self.inner = inner
        self.log = log
        self.gate = asyncio.Event()
        self.first = asyncio.Event()  # the first batch has been handed over

    async def enqueue(self, changes: list[Change], *, ids: bool = True) -> list[int]:
        keys = ",".join(c.record_key for c in changes)
        self.log.append(("commit", keys))
        if len(self.log) == 1:
            self.first.set()
            await self.gate.wait()
        return await self.inner.enqueue(changes, ids=ids)

    async def enqueue_stream(self, feed: ChangeFeed) -> None:
        await stream_batches(self.enqueue, feed)


async def test_the_next_batch_reaches_the_store_before_the_last_is_answered(
    store: SqlStore,
) -> None:
    # The store must not sit idle while the event loop answers a batch's senders.
    log: list[tuple[str, str]] = []
    gated = GatedStore(store, log)
    it = InboundIntake(gated)  # type: ignore[arg-type]
    writer = asyncio.create_task(it.run())

    async def send(key: str) -> None:
        await it.submit([change(key, 1)])
        log.append(("answered", key))

    try:
        a = asyncio.create_task(send("a"))
        await gated.first.wait()
        b = asyncio.create_task(send("b"))
        c = asyncio.create_task(send("c"))
        await asyncio.sleep(0.01)  # b and c wait behind a's commit
        gated.gate.set()
        await asyncio.gather(a, b, c)
        assert log == [
            ("commit", "a"),
            ("commit", "b,c"),
            ("answered", "a"),
            ("answered", "b"),
            ("answered", "c"),
        ]
        assert set(await store.pending_entries(IN, ["a", "b", "c"])) == {"a", "b", "c"}
    finally:
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer


class EndlessFeed:
    """A feed with one more single-change batch whenever asked, until `close`; it records
    what was taken (from whichever thread) and how each batch was settled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = True
        self.taken: list[int] = []
        self.outcomes: list[tuple[int, StoreError | None]] = []
        self._settling = asyncio.Event()

    def take(self) -> FeedBatch | None:
        with self._lock:
            if not self._open:
                return None
            n = len(self.taken)
            self.taken.append(n)
        return FeedBatch([change(f"s{n}", n)], n)

    def settled(self, batch: FeedBatch, error: StoreError | None) -> None:
        self.outcomes.append((batch.ref, error))
        self._settling.set()

    def close(self) -> None:
        with self._lock:
            self._open = False

    async def committed(self, n: int) -> None:
        while sum(1 for _, e in self.outcomes if e is None) < n:
            self._settling.clear()
            await self._settling.wait()


async def stored_keys(store: SqlStore, feed: EndlessFeed) -> set[str]:
    keys = [f"s{n}" for n in feed.taken]
    return set(await store.pending_entries(IN, keys))


async def test_an_endless_stream_leaves_room_for_other_store_work(store: SqlStore) -> None:
    # Senders that never stop must not starve the API and the flush: a read gets its turn.
    feed = EndlessFeed()
    stream = asyncio.create_task(store.enqueue_stream(feed))
    await feed.committed(3)
    read = asyncio.create_task(store.counts())
    await asyncio.wait([read], timeout=10)
    answered_while_streaming = read.done()
    feed.close()
    await asyncio.wait_for(stream, 10)
    assert answered_while_streaming
    assert (await read)[(IN, EntryStatus.PENDING)] >= 3
    await asyncio.sleep(0.01)  # the last settle runs on the loop
    # Every batch taken was settled once, committed, and is in the queue.
    assert sorted(ref for ref, _ in feed.outcomes) == feed.taken
    assert all(e is None for _, e in feed.outcomes)
    assert await stored_keys(store, feed) == {f"s{n}" for n in feed.taken}


async def test_a_cancelled_stream_settles_every_batch_it_took(store: SqlStore) -> None:
    feed = EndlessFeed()
    stream = asyncio.create_task(store.enqueue_stream(feed))
    await feed.committed(5)
    stream.cancel()
    await asyncio.wait([stream], timeout=10)
    ended_on_cancel = stream.done()
    taken = list(feed.taken)
    feed.close()  # what a stuck stream would still be taking from
    with pytest.raises(asyncio.CancelledError):
        await stream
    assert ended_on_cancel
    await asyncio.sleep(0.01)
    assert sorted(ref for ref, _ in feed.outcomes) == taken  # nobody waits for ever
    committed = {f"s{ref}" for ref, e in feed.outcomes if e is None}
    assert len(committed) >= 5
    # A batch answered as committed is in the queue; one answered with an error is not.
    assert await stored_keys(store, feed) == committed
    assert len(feed.taken) == len(taken)  # nothing is taken once the stream has ended
