"""The StateStore contract: one suite, run against SQLite and the real MariaDB."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from syncd.errors import StoreError
from syncd.model import (
    Change,
    Direction,
    EntryStatus,
    ErrorCategory,
    ObjectType,
    RunKind,
    RunTrigger,
)
from syncd.store.leases import keep_leases
from syncd.store.memory import MemoryStore
from syncd.store.mysql import MysqlStore
from syncd.store.protocols import StateStore
from syncd.store.sql import SqlStore
from syncd.store.sql.dialect import Tx, utcnow
from syncd.store.sql.migrations import LATEST_VERSION
from syncd.store.sql.tallies import TallyKey, tally_key
from syncd.store.sqlite import SqliteStore
from syncd.store.types import (
    DbsyncRow,
    EntryFilter,
    LinkFilter,
    RecordLink,
    RunFailure,
    SettledChange,
    SyncedRecord,
)

T = TypeVar("T")
Store = SqlStore | MemoryStore  # both have the SQL stores' extras the suite reads (queue_tallies)
IN, OUT = Direction.INBOUND, Direction.OUTBOUND
CONTACT, LEAD = ObjectType.CONTACT, ObjectType.LEAD


@pytest.fixture(params=["sqlite", "mysql", "memory"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(backend, where): a fresh SQLite file, a fresh MariaDB database or a new memory store."""
    if request.param == "mysql":
        return "mysql", str(request.getfixturevalue("mysql_database"))
    if request.param == "memory":
        return "memory", ""
    return "sqlite", str(tmp_path / "state" / "syncd.sqlite3")


# For tests about what only a SQL store has: the maintained count tables, which a hand edit
# can empty and `recount_tallies` rebuilds. The memory store counts its entries and links
# when asked and keeps no tally to lose (the counts themselves are tested on all backends).
SQL_ONLY = pytest.mark.parametrize("target", ["sqlite", "mysql"], indirect=True)


def make_store(target: tuple[str, str]) -> Store:
    kind, where = target
    if kind == "memory":
        return MemoryStore()
    return MysqlStore(where) if kind == "mysql" else SqliteStore(where)


@pytest.fixture
async def store(target: tuple[str, str]) -> AsyncIterator[Store]:
    s = make_store(target)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def change(
    key: str = "r1",
    fields: dict[str, object] | None = None,
    *,
    direction: Direction = IN,
    obj: ObjectType = CONTACT,
    email: str | None = None,
    name: str | None = None,
    source: str = "webhook",
) -> Change:
    return Change(direction, obj, key, source, fields or {}, email=email, name=name)


async def claim(store: StateStore, owner: str = "w1", limit: int = 100, **kw: object) -> list[int]:
    entries = await store.claim_pending(IN, limit=limit, owner=owner, lease_seconds=60, **kw)  # type: ignore[arg-type]
    return [e.id for e in entries]


# schema -----------------------------------------------------------------------------------
async def test_migrates_from_empty_and_reopens_idempotently(
    store: Store, target: tuple[str, str]
) -> None:
    assert isinstance(store, StateStore)
    assert await store.schema_version() == LATEST_VERSION
    await store.open()  # a second open on the same instance is a no-op
    again = make_store(target)
    await again.open()
    try:
        assert await again.schema_version() == LATEST_VERSION
        await again.ping()
    finally:
        await again.close()
        await again.close()  # closing twice is safe


async def test_a_closed_store_refuses_calls_and_keeps_its_data_for_reopening(
    store: Store,
) -> None:
    [entry_id] = await store.enqueue([change(fields={"a": 1})])
    await store.close()
    with pytest.raises(StoreError):
        await store.ping()
    with pytest.raises(StoreError):
        await store.enqueue([change(fields={"a": 2})])
    await store.open()
    entry = await store.get_entry(entry_id)
    assert entry is not None and entry.payload == {"a": 1}


# intake -----------------------------------------------------------------------------------
async def test_hundred_changes_of_one_record_coalesce(store: Store) -> None:
    ids = set()
    for i in range(100):
        ids |= set(await store.enqueue([change(fields={f"f{i % 7}": i, "last": i})]))
    assert len(ids) == 1
    entry = await store.get_entry(ids.pop())
    assert entry is not None and entry.status is EntryStatus.PENDING
    assert entry.payload == {**{f"f{j}": 99 - (99 - j) % 7 for j in range(7)}, "last": 99}
    assert entry.changed_fields == frozenset({*(f"f{j}" for j in range(7)), "last"})
    assert (await store.pending_stats(IN)).count == 1


async def test_enqueue_answers_each_changes_own_entry_in_big_mixed_batches(
    store: Store,
) -> None:
    await store.enqueue([change(f"k{i}", {"v": 0}) for i in range(0, 1200, 3)])  # some exist
    keys = [f"k{i}" for i in range(1200)]
    ids = await store.enqueue([change(k, {"v": 1}) for k in reversed(keys)])
    assert len(set(ids)) == 1200
    for key, entry_id in zip(reversed(keys), ids, strict=True):
        entry = await store.get_entry(entry_id)
        assert entry is not None and entry.record_key == key and entry.payload == {"v": 1}


async def test_enqueue_without_ids_stores_the_same(store: Store) -> None:
    # What the intake asks for: no ids back, the same entries and counts as with them.
    assert await store.enqueue([change("a", {"v": 1}), change("b", {"v": 1})], ids=False) == []
    assert await store.enqueue([change("b", {"v": 2}), change("c", {"v": 2})], ids=False) == []
    entries = await store.pending_entries(IN, ["a", "b", "c"])
    assert {k: e.payload for k, e in entries.items()} == {
        "a": {"v": 1},
        "b": {"v": 2},
        "c": {"v": 2},
    }
    ids = await store.enqueue([change("c", {"v": 3}), change("d", {"v": 3})])
    assert ids[0] == entries["c"].id and ids[1] not in {e.id for e in entries.values()}
    assert await store.queue_tallies() == {("contact", "inbound", "pending", "", ""): 4}


async def test_batch_with_two_changes_of_one_record(store: Store) -> None:
    ids = await store.enqueue(
        [
            change("a", {"x": 1, "y": 1}, email="A@Example.com"),
            change("b", {"x": 5}),
            change("a", {"x": 2, "z": 3}, name="Ann"),
            change("a", {"x": 1}, obj=LEAD),
            change("a", {"x": 1}, direction=OUT),
        ]
    )
    assert ids[0] == ids[2] and len(set(ids)) == 4
    a = await store.get_entry(ids[0])
    assert a is not None
    assert a.payload == {"x": 2, "y": 1, "z": 3}
    assert a.changed_fields == {"x", "y", "z"}
    assert (a.email, a.name) == ("A@Example.com", "Ann")
    # a later change updates email/name when given, keeps them when not
    [again] = await store.enqueue([change("a", {"y": 9}, email="new@example.com")])
    a = await store.get_entry(again)
    assert a is not None and again == ids[0]
    assert (a.email, a.name, a.payload["y"]) == ("new@example.com", "Ann", 9)
    assert await store.enqueue([]) == []


async def test_change_during_processing_makes_a_second_entry(store: Store) -> None:
    [first] = await store.enqueue([change(fields={"a": 1, "b": 1})])
    assert await claim(store) == [first]
    [second] = await store.enqueue([change(fields={"b": 2})])
    assert second != first
    assert await store.complete(first, owner="w1", transferred={"a": 1, "b": 1})
    e1, e2 = await store.get_entry(first), await store.get_entry(second)
    assert e1 is not None and e1.status is EntryStatus.PROCESSED
    assert e2 is not None and e2.status is EntryStatus.PENDING and e2.payload == {"b": 2}
    found = await store.pending_entries(IN, ["r1", "nope"])
    assert set(found) == {"r1"} and found["r1"].id == second


async def test_failed_retry_merges_under_newer_values(store: Store) -> None:
    [first] = await store.enqueue([change(fields={"a": 1, "b": 1}, email="x@example.com")])
    await claim(store)
    [second] = await store.enqueue([change(fields={"b": 2, "c": 2})])
    retry_at = datetime.now(UTC) + timedelta(seconds=30)
    ok = await store.fail(
        first,
        owner="w1",
        category=ErrorCategory.TRANSIENT,
        code="503",
        message="unavailable",
        retry_at=retry_at,
    )
    assert ok
    pending = await store.list_entries(EntryFilter(status=[EntryStatus.PENDING]))
    assert len(pending) == 1
    merged = pending[0]
    assert merged.id == first  # the older entry survives, holding the attempt history
    assert merged.payload == {"a": 1, "b": 2, "c": 2}
    assert merged.changed_fields == {"a", "b", "c"}
    assert merged.attempts == 1 and merged.email == "x@example.com"
    assert merged.error_code == "503" and merged.lease_owner is None
    assert merged.next_attempt_at is not None
    assert abs(merged.next_attempt_at - retry_at) < timedelta(milliseconds=1)
    assert await store.get_entry(second) is None
    assert await claim(store) == []  # not due yet
    assert await claim(store, now=retry_at + timedelta(seconds=1)) == [first]


# claims and outcomes ------------------------------------------------------------------------
async def test_claim_takes_due_entries_oldest_first_under_a_lease(store: Store) -> None:
    ids = await store.enqueue([change(f"r{i}", {"i": i}) for i in range(5)])
    await store.enqueue([change("o", {"i": 1}, direction=OUT)])
    now = datetime.now(UTC)
    got = await store.claim_pending(IN, limit=3, owner="w1", lease_seconds=30, now=now)
    assert [e.id for e in got] == sorted(ids)[:3]
    for e in got:
        assert e.status is EntryStatus.PROCESSING and e.lease_owner == "w1"
        assert e.lease_expires_at == now + timedelta(seconds=30)
        assert e.attempts == 0 and e.created_at.tzinfo is UTC
    stored = await store.get_entry(got[0].id)
    assert stored is not None and stored.status is EntryStatus.PROCESSING
    assert stored.lease_expires_at == now + timedelta(seconds=30)
    assert await claim(store, "w2") == sorted(ids)[3:]
    assert await claim(store, "w3") == []
    assert await store.claim_pending(IN, limit=0, owner="w", lease_seconds=1) == []
    counts = await store.counts()
    assert counts[(IN, EntryStatus.PROCESSING)] == 5 and counts[(OUT, EntryStatus.PENDING)] == 1
    assert await store.pending_by_object(OUT) == {CONTACT: 1}


async def test_outcomes_need_the_lease_owner(store: Store) -> None:
    a, b, c, d = await store.enqueue([change(k) for k in "abcd"])
    await claim(store, "w1")
    kw = {"category": ErrorCategory.VALIDATION, "code": "REQUIRED", "message": "LastName"}
    assert not await store.complete(a, owner="other", transferred={})
    assert not await store.fail(b, owner="other", **kw)  # type: ignore[arg-type]
    assert not await store.exclude(c, owner="other", reason="no tag")
    run = await store.start_run(RunKind.FLUSH, RunTrigger.SIZE)
    assert await store.complete(
        a, owner="w1", transferred={"Email": "x"}, skipped={"p": "ro"}, run_id=run
    )
    assert not await store.complete(a, owner="w1", transferred={})  # not processing any more
    assert await store.fail(b, owner="w1", run_id=run, **kw)  # type: ignore[arg-type]
    assert await store.exclude(c, owner="w1", reason="no sync tag")
    assert await store.release([d, a], owner="w1") == 1
    ea, eb, ec, ed = [await store.get_entry(i) for i in (a, b, c, d)]
    assert ea is not None and ea.status is EntryStatus.PROCESSED and ea.run_id == run
    assert ea.transferred == {"Email": "x"} and ea.skipped_fields == {"p": "ro"}
    assert eb is not None and eb.status is EntryStatus.ERROR and eb.attempts == 1
    assert (eb.error_category, eb.error_code, eb.error_message) == (
        ErrorCategory.VALIDATION,
        "REQUIRED",
        "LastName",
    )
    assert ec is not None and ec.status is EntryStatus.EXCLUDED
    assert ec.error_message == "no sync tag"
    assert ed is not None and ed.status is EntryStatus.PENDING and ed.attempts == 0
    assert ed.lease_owner is None
    assert await store.list_entries(EntryFilter(run_id=run)) == [eb, ea]


async def test_expired_leases_are_reclaimed(store: Store) -> None:
    [a, b] = await store.enqueue([change("a", {"v": 1}), change("b", {"v": 1})])
    t0 = datetime.now(UTC)
    await store.claim_pending(IN, limit=1, owner="dead", lease_seconds=10, now=t0)
    await store.claim_pending(IN, limit=1, owner="live", lease_seconds=100, now=t0)
    [a2] = await store.enqueue([change("a", {"v": 2, "w": 2})])
    assert await store.reclaim_expired(t0 + timedelta(seconds=5)) == 0
    assert await store.reclaim_expired(t0 + timedelta(seconds=11)) == 1
    ea = await store.get_entry(a)
    assert ea is not None and ea.status is EntryStatus.PENDING and ea.attempts == 0
    assert ea.payload == {"v": 2, "w": 2} and ea.lease_owner is None
    assert await store.get_entry(a2) is None
    assert not await store.complete(a, owner="dead", transferred={})
    eb = await store.get_entry(b)
    assert eb is not None and eb.status is EntryStatus.PROCESSING


async def test_extended_leases_outlive_their_first_end_for_their_owner_only(
    store: Store,
) -> None:
    [a, b] = await store.enqueue([change("a"), change("b")])
    await store.claim_pending(IN, limit=2, owner="w1", lease_seconds=1)
    assert await store.extend_leases([a, b], owner="intruder", lease_seconds=3600) == 0
    assert await store.extend_leases([a], owner="w1", lease_seconds=3600) == 1
    later = datetime.now(UTC) + timedelta(seconds=2)
    assert await store.reclaim_expired(later) == 1  # b only
    ea, eb = await store.get_entry(a), await store.get_entry(b)
    assert ea is not None and ea.status is EntryStatus.PROCESSING and ea.lease_owner == "w1"
    assert eb is not None and eb.status is EntryStatus.PENDING
    assert await store.extend_leases([b], owner="w1", lease_seconds=3600) == 0  # not held


async def test_kept_leases_survive_a_call_longer_than_the_lease(store: Store) -> None:
    await store.enqueue([change("slow")])
    entries = await store.claim_pending(IN, limit=1, owner="w1", lease_seconds=0.4)
    async with keep_leases(store, entries, "w1", 0.4):
        await asyncio.sleep(1.2)  # three lease lengths: a vendor call running long
        assert await store.reclaim_expired() == 0
    await asyncio.sleep(0.6)  # no longer kept: the lease runs out
    assert await store.reclaim_expired() == 1


async def test_held_leases_is_the_fencing_check(store: Store) -> None:
    [a, b, c] = await store.enqueue([change("a"), change("b"), change("c")])
    await store.claim_pending(IN, limit=3, owner="w1", lease_seconds=30)
    assert await store.held_leases([a, b, c], owner="w1", for_seconds=10) == {a, b, c}
    assert await store.held_leases([a, b, c], owner="w2", for_seconds=0) == set()
    # Not enough lease left for a safe write: not held for that purpose.
    assert await store.held_leases([a], owner="w1", for_seconds=60) == set()
    # Lease ran out and another claimer took b: w1 holds only a and c.
    await store.release([b], owner="w1")
    [eb] = await store.claim_pending(IN, limit=1, owner="w2", lease_seconds=30)
    assert eb.id == b
    assert await store.held_leases([a, b, c], owner="w1", for_seconds=0) == {a, c}
    await store.complete(a, owner="w1", transferred={}, run_id=None)
    assert await store.held_leases([a, b, c], owner="w1", for_seconds=0) == {c}


async def test_a_claimer_that_lost_its_leases_learns_it_before_writing(store: Store) -> None:
    await store.enqueue([change("x"), change("y")])
    entries = await store.claim_pending(IN, limit=2, owner="w1", lease_seconds=2)
    async with keep_leases(store, entries, "w1", 2) as leases:
        assert await leases.still_held([e.id for e in entries]) == {e.id for e in entries}
    # Frozen past its lease (no renewal): another instance reclaims and claims them.
    await asyncio.sleep(2.3)
    assert await store.reclaim_expired() == 2
    await store.claim_pending(IN, limit=2, owner="w2", lease_seconds=30)
    assert await leases.still_held([e.id for e in entries]) == set()
    assert leases.lost == {e.id for e in entries}


# reading and operator actions ---------------------------------------------------------------
async def test_list_entries_filters_and_cursor_paging(store: Store) -> None:
    before = datetime.now(UTC)
    ids = await store.enqueue(
        [
            change(f"r{i}", {"i": i}, email=f"user{i}@Example.com", name=f"Name {i}")
            for i in range(25)
        ]
        + [
            change("w", {}, email="100%_off@x.io", name="Wild"),
            change("o", {}, obj=LEAD, source="poll"),
        ]
    )
    page1 = await store.list_entries(EntryFilter(), limit=10)
    assert [e.id for e in page1] == sorted(ids, reverse=True)[:10]
    seen = [e.id for e in page1]
    while True:
        page = await store.list_entries(EntryFilter(), before_id=seen[-1], limit=10)
        if not page:
            break
        seen += [e.id for e in page]
    assert seen == sorted(ids, reverse=True)
    text = await store.list_entries(EntryFilter(text="USER1"))
    assert {e.email for e in text} == {f"user{i}@Example.com" for i in (1, *range(10, 20))}
    assert [e.name for e in await store.list_entries(EntryFilter(text="100%_"))] == ["Wild"]
    assert await store.list_entries(EntryFilter(text="1%0")) == []
    assert [e.name for e in await store.list_entries(EntryFilter(text="name 24"))] == ["Name 24"]
    assert len(await store.list_entries(EntryFilter(object=LEAD))) == 1
    assert len(await store.list_entries(EntryFilter(source="poll", direction=IN))) == 1
    assert await store.list_entries(EntryFilter(direction=OUT)) == []
    assert len(await store.list_entries(EntryFilter(created_after=before))) == 27
    assert await store.list_entries(EntryFilter(created_before=before)) == []
    assert (
        len(await store.list_entries(EntryFilter(updated_before=datetime.now(UTC) + timedelta(1))))
        == 27
    )
    await claim(store, limit=2)
    both = await store.list_entries(EntryFilter(status=[EntryStatus.PROCESSING, EntryStatus.ERROR]))
    assert [e.id for e in both] == sorted(ids)[:2][::-1]
    assert await store.list_entries(EntryFilter(error_category=ErrorCategory.AUTH)) == []


async def test_delete_pending_only_deletes_pending(store: Store) -> None:
    a, b = await store.enqueue([change("a"), change("b")])
    await store.claim_pending(IN, limit=1, owner="w", lease_seconds=5)
    assert await store.delete_pending(a) is EntryStatus.PROCESSING
    assert await store.delete_pending(b) is EntryStatus.PENDING
    assert await store.get_entry(b) is None
    assert await store.delete_pending(b) is None
    assert (await store.get_entry(a)) is not None
    [b2] = await store.enqueue([change("b")])  # the record can queue again
    assert b2 != b


async def test_retry_and_retry_matching_move_errors_back(store: Store) -> None:
    ids = await store.enqueue(
        [change(f"r{i}", {"v": i}, source="s" if i < 3 else "t") for i in range(5)]
    )
    await claim(store)
    for i in ids:
        await store.fail(i, owner="w1", category=ErrorCategory.DUPLICATE, code="DUP", message="dup")
    [newer] = await store.enqueue([change("r0", {"v": 100, "n": 1})])
    assert await store.retry([ids[0], 999_999]) == 1
    pend = await store.list_entries(EntryFilter(status=[EntryStatus.PENDING]))
    assert [(e.id, dict(e.payload), e.attempts) for e in pend] == [(ids[0], {"v": 100, "n": 1}, 0)]
    assert pend[0].next_attempt_at is None
    assert await store.get_entry(newer) is None
    assert await store.retry([ids[0]]) == 0  # already pending
    assert await store.retry_matching(EntryFilter(status=[EntryStatus.PENDING])) == 0
    assert await store.retry_matching(EntryFilter(source="s")) == 2
    assert await store.retry_matching(EntryFilter()) == 2
    assert (await store.pending_stats(IN)).count == 5
    assert (await store.counts()).get((IN, EntryStatus.ERROR), 0) == 0


# links ------------------------------------------------------------------------------------
async def test_a_links_base_is_kept_replaced_or_left_alone(store: Store) -> None:
    base = {"Phone": "555", "LastName": "Lee", "Amount": 5.5, "Flag": True, "Gone": None}
    await store.upsert_link(RecordLink(CONTACT, "h1", "c1", base=base))
    link = await store.get_link(CONTACT, hub_id="h1")
    assert link is not None and link.base == base and link.base_origin is None
    # An upsert without a base (a conversion, a relink) leaves the stored one alone.
    await store.upsert_link(RecordLink(CONTACT, "h1", "c1", name="Lee"))
    link = await store.get_link(CONTACT, crm_id="c1")
    assert link is not None and link.base == base and link.name == "Lee"
    # A claim that lost its entry changes no link: the new claimer's stays.
    [i] = await store.enqueue([change("h1")])
    await claim(store, "x")
    stale = [SyncedRecord(i, RecordLink(CONTACT, "h1", "c1", base={"Phone": "old"}))]
    assert await store.link_and_complete(stale, owner="lost") == 0
    assert (await store.get_links(CONTACT, ["c1"]))["c1"].base == base
    # A new base replaces it whole, in a batch as one by one.
    await store.link_and_complete(
        [SyncedRecord(i, RecordLink(CONTACT, "h1", "c1", base={"Phone": "9"}))], owner="x"
    )
    assert (await store.get_links(CONTACT, ["c1"]))["c1"].base == {"Phone": "9"}
    await store.upsert_link(RecordLink(CONTACT, "h2", "c2", base={}))
    link = await store.get_link(CONTACT, hub_id="h2")
    assert link is not None and link.base == {}


async def test_deletions_are_marked_once_per_side_and_cleared_by_a_relink(store: Store) -> None:
    for i in range(3):
        await store.upsert_link(RecordLink(CONTACT, f"h{i}", f"c{i}", base={"Phone": str(i)}))
    at = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    marked = await store.mark_deleted(CONTACT, "crm", ["c0", "c1", "nope"], at=at)
    assert sorted(lk.crm_id or "" for lk in marked) == ["c0", "c1"]
    assert all(lk.deleted_side == "crm" and lk.deleted_at == at for lk in marked)
    # Seen again (a later pull's window overlaps): the first sighting stays.
    later = at + timedelta(days=1)
    assert await store.mark_deleted(CONTACT, "crm", ["c0"], at=later) == []
    assert await store.mark_deleted(CONTACT, "hub", ["h0"], at=later) == []
    link = await store.get_link(CONTACT, crm_id="c0")
    assert link is not None and link.deleted_at == at and link.base == {"Phone": "0"}
    assert await store.count_links(LinkFilter(deleted_side="crm")) == 2
    # A restore relinks: the mark goes with it.
    await store.upsert_link(RecordLink(CONTACT, "h0", "c9", base={"Phone": "0"}))
    link = await store.get_link(CONTACT, hub_id="h0")
    assert link is not None and link.deleted_side is None and link.deleted_at is None
    hub_marked = await store.mark_deleted(CONTACT, "hub", ["h2"], at=later)
    assert [(lk.hub_id, lk.deleted_side) for lk in hub_marked] == [("h2", "hub")]


@SQL_ONLY
async def test_migration_seeds_bases_from_the_last_values_sent(target: tuple[str, str]) -> None:
    """A store made before bases existed (schema 7) gets, per link, the last entry that
    wrote the record, in that entry's field names, and which way it went."""
    s = make_store(target)
    assert isinstance(s, SqlStore)
    await s.open()

    async def back_to_7(tx: Tx) -> None:
        # What schema 7 was: no bases, version 7.
        await tx.execute("ALTER TABLE record_links DROP COLUMN base")
        await tx.execute("ALTER TABLE record_links DROP COLUMN base_origin")
        await tx.execute("ALTER TABLE record_links DROP COLUMN deleted_at")
        await tx.execute("DELETE FROM schema_version WHERE version > 7")
        now = s.dialect.ts(utcnow())
        links = (("contact", "h1", "c1"), ("contact", "h2", "c2"), ("lead", "h3", None))
        for obj, hub, crm in links:
            await tx.execute(
                "INSERT INTO record_links (object, hub_id, crm_id, sync_tags, status,"
                " created_at, updated_at) VALUES (?, ?, ?, '[]', 'linked', ?, ?)",
                (obj, hub, crm, now, now),
            )
        entries = (
            ("inbound", "contact", "h1", '{"object": "contact", "fields": {"Phone": "1"}}'),
            ("outbound", "contact", "c1", '{"object": "contact", "fields": {"phone": "2"}}'),
            ("inbound", "contact", "h2", '{"object": "contact", "fields": {"LastName": "L"}}'),
        )
        for direction, obj, key, sent in entries:
            await tx.execute(
                "INSERT INTO queue_entries (direction, object, record_key, source, payload,"
                " changed_fields, status, attempts, transferred, created_at, updated_at, event)"
                " VALUES (?, ?, ?, 'x', '{}', '[]', 'processed', 1, ?, ?, ?, 'update')",
                (direction, obj, key, sent, now, now),
            )

    await s._run(back_to_7)
    await s.close()
    await s.open()
    try:
        assert await s.schema_version() == LATEST_VERSION
        one = await s.get_link(CONTACT, hub_id="h1")
        two = await s.get_link(CONTACT, hub_id="h2")
        three = await s.get_link(LEAD, hub_id="h3")
        assert one is not None and one.base_origin == "outbound"
        assert one.base == {"object": "contact", "fields": {"phone": "2"}}  # the newest
        assert two is not None and two.base_origin == "inbound"
        assert two.base == {"object": "contact", "fields": {"LastName": "L"}}
        assert three is not None and three.base is None and three.base_origin is None
    finally:
        await s.close()


async def test_links_upsert_lookup_paging_and_counts(store: Store) -> None:
    synced = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    lid = await store.upsert_link(
        RecordLink(
            CONTACT,
            hub_id="h1",
            crm_id=None,
            email="Ann@Example.com",
            name="Ann",
            sync_tags=frozenset({"added-to-salesforce-contact"}),
            last_synced_at=synced,
        )
    )
    same = await store.upsert_link(
        RecordLink(CONTACT, hub_id="h1", crm_id="003A", content_hash="c1")
    )
    assert same == lid
    again = await store.upsert_link(
        RecordLink(CONTACT, hub_id=None, crm_id="003A", status="deleted", deleted_side="crm")
    )
    assert again == lid
    link = await store.get_link(CONTACT, email="ANN@example.COM")
    assert link is not None and link.id == lid
    assert (link.hub_id, link.crm_id, link.email, link.name) == (
        "h1",
        "003A",
        "ann@example.com",
        "Ann",
    )
    assert link.status == "deleted" and link.deleted_side == "crm" and link.content_hash is None
    assert link.sync_tags == frozenset() and link.last_synced_at == synced
    assert link.created_at is not None and link.created_at.tzinfo is UTC
    assert (await store.get_link(CONTACT, crm_id="003A")) == link
    assert (await store.get_link(CONTACT, hub_id="h1")) == link
    assert await store.get_link(LEAD, hub_id="h1") is None
    assert await store.get_link(CONTACT, crm_id="003a") is None  # ids are case-sensitive
    assert await store.get_link(CONTACT) is None
    for i in range(30):
        await store.upsert_link(
            RecordLink(LEAD, hub_id=f"L{i}", crm_id=f"00Q{i}", email=f"l{i}@x.io")
        )
    seen: list[int] = []
    after = None
    while page := await store.list_links(LinkFilter(object=LEAD), after_id=after, limit=7):
        seen += [x.id for x in page if x.id is not None]
        after = seen[-1]
    assert len(seen) == 30 and seen == sorted(seen)
    assert [x.hub_id for x in await store.list_links(LinkFilter(text="L2@"))] == ["L2"]
    assert len(await store.list_links(LinkFilter(deleted_side="crm"))) == 1
    assert len(await store.list_links(LinkFilter(synced_after=synced))) == 1
    assert await store.list_links(LinkFilter(synced_before=synced)) == []
    assert await store.link_counts() == {(CONTACT, "deleted"): 1, (LEAD, "linked"): 30}


# runs, cursors, integration errors ----------------------------------------------------------
async def test_runs_and_failures(store: Store) -> None:
    r1 = await store.start_run(RunKind.DBSYNC, RunTrigger.MANUAL, name="shop", owner="i1")
    r2 = await store.start_run(RunKind.FLUSH, RunTrigger.INTERVAL)
    running = await store.running_run(RunKind.DBSYNC, "shop")
    assert running is not None and running.id == r1 and running.status == "running"
    assert (await store.running_run(RunKind.FLUSH, None)) is not None
    assert await store.running_run(RunKind.DBSYNC, "other") is None
    await store.add_run_failures(
        [
            RunFailure(r1, f"k{i}", ("email",), "invalid email", ErrorCategory.VALIDATION, f"e{i}")
            for i in range(5)
        ]
    )
    await store.add_run_failures([])
    await store.finish_run(r1, counts={"written": 10, "failed": 5}, status="succeeded")
    run = await store.get_run(r1)
    assert (
        run is not None and run.status == "succeeded" and run.counts == {"written": 10, "failed": 5}
    )
    assert run.finished_at is not None and run.finished_at >= run.started_at and run.owner == "i1"
    assert run.trigger is RunTrigger.MANUAL and run.name == "shop"
    assert await store.running_run(RunKind.DBSYNC, "shop") is None
    assert [r.id for r in await store.list_runs()] == [r2, r1]
    assert [r.id for r in await store.list_runs(kind=RunKind.DBSYNC, name="shop")] == [r1]
    fails = await store.run_failures(r1, after=2, limit=2)
    assert [f.key for f in fails] == ["k2", "k3"] and fails[0].columns == ("email",)
    assert fails[0].email == "e2" and fails[0].category is ErrorCategory.VALIDATION
    assert await store.get_run(999_999) is None


async def test_failures_of_any_count_are_all_recorded(store: Store) -> None:
    """Batches that end in a part of one row after full multi-row statements (501 = 500 + 1
    on SQLite) are recorded whole, in order."""
    run = await store.start_run(RunKind.DBSYNC, RunTrigger.MANUAL, name="many")
    n = 0
    for size in (1, 2, 500, 501, 1001):
        await store.add_run_failures(
            [
                RunFailure(run, f"k{n + i:05d}", ("email",), "bad", ErrorCategory.VALIDATION, None)
                for i in range(size)
            ]
        )
        n += size
    keys = [f.key for f in await store.run_failures(run, limit=10_000)]
    assert keys == [f"k{i:05d}" for i in range(n)]


async def test_cursors(store: Store) -> None:
    assert await store.get_cursor("outbound:contact") is None
    await store.set_cursor("outbound:contact", "2024-01-01T00:00:00Z")
    await store.set_cursor("outbound:contact", "2024-01-02T00:00:00Z")
    assert await store.get_cursor("outbound:contact") == "2024-01-02T00:00:00Z"


async def test_integration_errors_keep_since(store: Store) -> None:
    await store.set_integration_error(IN, ErrorCategory.AUTH, "token revoked")
    [first] = await store.integration_errors()
    await store.set_integration_error(IN, ErrorCategory.AUTH, "still revoked")
    await store.set_integration_error(IN, ErrorCategory.QUOTA, "quota")
    await store.set_integration_error(OUT, ErrorCategory.AUTH, "x")
    errs = {(e.direction, e.category): e for e in await store.integration_errors()}
    auth = errs[(IN, ErrorCategory.AUTH)]
    assert auth.since == first.since and auth.message == "still revoked"
    assert auth.updated_at >= first.updated_at
    assert await store.clear_integration_error(IN, ErrorCategory.AUTH) == 1
    assert await store.clear_integration_error(IN) == 1
    assert [(e.direction, e.category) for e in await store.integration_errors()] == [
        (OUT, ErrorCategory.AUTH)
    ]


async def test_a_retried_error_never_brings_back_older_values(store: Store) -> None:
    # x=1 failed; x=2 came later and is in flight when the old error is retried, then y=3
    # arrives and the claim on x=2 is lost: the record must end up with x=2, not x=1.
    def failed(key: str) -> SettledChange:
        return SettledChange(
            change(key, {"x": 1}),
            EntryStatus.ERROR,
            error_category=ErrorCategory.REJECTED,
            message="m",
        )

    assert await store.record_settled([failed("a")]) == 1
    await store.enqueue([change("a", {"x": 2})])
    assert len(await store.claim_pending(IN, limit=1, owner="w1", lease_seconds=60)) == 1
    assert await store.retry_matching(EntryFilter()) == 1
    await store.enqueue([change("a", {"y": 3})])
    assert await store.reclaim_expired(datetime.now(UTC) + timedelta(hours=1)) == 1
    pending = await store.pending_entries(IN, ["a"])
    assert pending["a"].payload == {"x": 2, "y": 3}
    # An old error whose every value was sent since is dropped when retried, not resent.
    assert await store.record_settled([failed("b")]) == 1
    await store.enqueue([change("b", {"x": 2})])
    got = await store.claim_pending(IN, limit=5, owner="w2", lease_seconds=60)
    (mine,) = [e for e in got if e.record_key == "b"]
    assert await store.complete(mine.id, owner="w2", transferred=mine.payload)
    assert await store.retry_matching(EntryFilter()) == 1
    assert await store.pending_entries(IN, ["b"]) == {}
    assert (await store.counts()).get((IN, EntryStatus.ERROR), 0) == 0


# dbsync rows and job locks ----------------------------------------------------------------
async def test_dbsync_rows(store: Store) -> None:
    rows = [DbsyncRow("shop", f"{i:03}", f"u{i}@x.io", f"h{i}", f"c{i}", 1) for i in range(10)]
    await store.upsert_dbsync_rows(rows)
    first = await store.dbsync_rows("shop", [r.row_key for r in rows])
    ids = {r.id for r in first.values()}
    assert len(ids) == 10 and min(ids) > 0  # each row carries its own store id
    await store.upsert_dbsync_rows([DbsyncRow("shop", "001", "new@x.io", None, "c1b", 2)])
    await store.upsert_dbsync_rows([DbsyncRow("other", "001", "o@x.io", "h", "c", 1)])
    found = await store.dbsync_rows("shop", ["001", "002", "zzz"])
    assert set(found) == {"001", "002"}
    # An upsert keeps the row's id (dbsync remembers the rows a pass met by id).
    assert found["001"] == DbsyncRow("shop", "001", "new@x.io", None, "c1b", 2, first["001"].id)
    await store.upsert_dbsync_rows([r._replace(run_id=2) for r in rows[:5]])
    gone = await store.dbsync_rows_not_seen("shop", 2, limit=3)
    assert [r.row_key for r in gone] == ["005", "006", "007"]
    more = await store.dbsync_rows_not_seen("shop", 2, after_key="007")
    assert [r.row_key for r in more] == ["008", "009"]
    assert (await store.dbsync_rows("shop", ["003"]))["003"].content_hash == "c3"
    await store.delete_dbsync_rows("shop", ["008", "009"])
    assert await store.count_dbsync_rows("shop") == 8
    assert await store.count_dbsync_rows("other") == 1


async def test_dbsync_rows_read_back_exactly_over_many_lookup_chunks(store: Store) -> None:
    # 4,500 keys span several lookup chunks on either store; hostile text survives the
    # packed (SQLite) and the row-by-row (MySQL) result alike.
    odd = [
        "o'brien\\x@ex.io",
        'quote"d@ex.io',
        "\U0001f600@ex.io",
        "tab\tnl\n@ex.io",
        "null\x01@ex.io",
    ]
    rows = [
        DbsyncRow(
            "shop",
            f"k{i:05}",
            odd[i % len(odd)] if i % 7 == 0 else f"u{i}@x.io",
            None if i % 3 == 0 else f"hub-{i}",
            f"digest{i}\x1fsrc{i}",
            10 + i % 4,
        )
        for i in range(4500)
    ]
    await store.upsert_dbsync_rows(rows)
    asked = [r.row_key for r in rows] + ["absent-1", "absent-2"]
    found = await store.dbsync_rows("shop", asked)
    assert set(found) == {r.row_key for r in rows}
    assert len({r.id for r in found.values()}) == 4500
    for r in rows:
        assert found[r.row_key] == r._replace(id=found[r.row_key].id)
        assert type(found[r.row_key].run_id) is int and type(found[r.row_key].id) is int


async def test_upsert_dbsync_rows_of_a_run_leave_the_others_unseen(store: Store) -> None:
    old = [DbsyncRow("shop", f"{i:03}", f"u{i}@x.io", f"h{i}", f"c{i}", 1) for i in range(6)]
    await store.upsert_dbsync_rows([*old, DbsyncRow("other", "000", "o@x.io", "h", "c", 1)])
    written = [
        DbsyncRow("shop", "001", "u1@x.io", "h1", "c1b", 3),
        DbsyncRow("shop", "002", "u2@x.io", "h2", "c2", 3),
        DbsyncRow("shop", "003", "u3@x.io", "h3", "c3", 3),
        DbsyncRow("shop", "100", "n@x.io", "h9", "n", 3),
    ]
    await store.upsert_dbsync_rows(written)
    found = await store.dbsync_rows("shop", ["001", "002", "003", "004", "100"])
    assert found["001"] == written[0]._replace(id=found["001"].id)
    assert found["100"] == written[3]._replace(id=found["100"].id)
    assert (found["002"].run_id, found["003"].run_id, found["004"].run_id) == (3, 3, 1)
    assert found["002"].content_hash == "c2"
    gone = await store.dbsync_rows_not_seen("shop", 3)
    assert [r.row_key for r in gone] == ["000", "004", "005"]
    assert (await store.dbsync_rows("other", ["000"]))["000"].run_id == 1
    await store.upsert_dbsync_rows([])
    assert await store.count_dbsync_rows("shop") == 7


async def test_job_lock_exclusivity_and_expiry(store: Store) -> None:
    assert await store.try_job_lock("pull:contact", "a", ttl_seconds=60)
    assert not await store.try_job_lock("pull:contact", "b", ttl_seconds=60)
    assert await store.try_job_lock("pull:contact", "a", ttl_seconds=60)  # the holder extends
    assert await store.try_job_lock("pull:lead", "b", ttl_seconds=60)
    await store.release_job_lock("pull:contact", "b")  # not the holder: no effect
    assert not await store.try_job_lock("pull:contact", "b", ttl_seconds=60)
    await store.release_job_lock("pull:contact", "a")
    assert await store.try_job_lock("pull:contact", "b", ttl_seconds=0.001)
    await asyncio.sleep(0.01)
    assert await store.try_job_lock("pull:contact", "c", ttl_seconds=60)  # b's expired


async def test_a_job_lock_taken_over_cannot_be_extended_again(store: Store) -> None:
    assert await store.try_job_lock("dbsync:shop", "a", ttl_seconds=0.001)
    await asyncio.sleep(0.01)
    # Ran out, nobody took it: the holder may go on (nobody else worked meanwhile).
    assert await store.extend_job_lock("dbsync:shop", "a", ttl_seconds=0.001)
    await asyncio.sleep(0.01)
    assert await store.try_job_lock("dbsync:shop", "b", ttl_seconds=60)
    assert not await store.extend_job_lock("dbsync:shop", "a", ttl_seconds=60)
    await store.release_job_lock("dbsync:shop", "b")
    # Released by b: a does not get it back by extending (only by taking it anew).
    assert not await store.extend_job_lock("dbsync:shop", "a", ttl_seconds=60)
    assert await store.extend_job_lock("dbsync:shop", "b", ttl_seconds=60) is False


async def test_interrupting_a_run_leaves_one_that_ended_meanwhile_alone(store: Store) -> None:
    live = await store.start_run(RunKind.PULL, RunTrigger.SCHEDULE, name="contact", owner="a")
    done = await store.start_run(RunKind.PULL, RunTrigger.SCHEDULE, name="lead", owner="a")
    await store.finish_run(done, counts={"read": 3}, status="succeeded")
    assert await store.interrupt_run(live, error="a went away")
    assert not await store.interrupt_run(done, error="a went away")
    assert not await store.interrupt_run(live, error="again")
    r_live, r_done = await store.get_run(live), await store.get_run(done)
    assert r_live is not None and (r_live.status, r_live.error) == ("interrupted", "a went away")
    assert r_live.finished_at is not None
    assert r_done is not None and (r_done.status, r_done.counts) == ("succeeded", {"read": 3})


async def test_instances_beat_with_their_view_and_are_forgotten_when_long_gone(
    store: Store,
) -> None:
    t0 = datetime.now(UTC) - timedelta(seconds=5)
    await store.beat("a", t0, {"inbound": {"paused": True}})
    await store.beat("b", t0, {})
    await store.beat("a", t0, {"inbound": {"paused": False}})
    a, b = await store.instances()
    assert (a.id, b.id) == ("a", "b") and a.seen_at >= b.seen_at
    assert a.view == {"inbound": {"paused": False}} and a.started_at == t0
    assert await store.forget_instances(a.seen_at) == 1  # b was seen before a's last beat
    assert [i.id for i in await store.instances()] == ["a"]
    # Restarted under the same (configured) id: a new start.
    t1 = t0 + timedelta(seconds=3)
    await store.beat("a", t1, {})
    [again] = await store.instances()
    assert again.started_at == t1


async def test_page_sessions_are_valid_until_ended_or_expired_for_every_opener(
    store: Store, target: tuple[str, str]
) -> None:
    now = datetime.now(UTC)
    await store.start_session("a" * 64, now + timedelta(hours=12))
    await store.start_session("b" * 64, now + timedelta(hours=12))
    await store.start_session("c" * 64, now - timedelta(seconds=1))  # already expired
    assert await store.session_valid("a" * 64)
    assert not await store.session_valid("c" * 64)
    assert not await store.session_valid("d" * 64)
    other = store if target[0] == "memory" else make_store(target)
    if other is not store:
        await other.open()
    try:
        # Ended through one opener (an instance), it is ended for every other.
        assert await other.session_valid("a" * 64)
        assert await other.end_session("a" * 64)
        assert not await store.session_valid("a" * 64)
        assert not await store.end_session("a" * 64)  # a second logout finds nothing
        assert await store.session_valid("b" * 64)  # the other session lives on
        # A new session drops the expired ones.
        await store.start_session("e" * 64, now + timedelta(hours=1))
        assert not await other.end_session("c" * 64)
    finally:
        if other is not store:
            await other.close()


async def test_timestamps_are_aware_utc_with_sub_millisecond_precision(store: Store) -> None:
    [i] = await store.enqueue([change()])
    e = await store.get_entry(i)
    assert e is not None and e.created_at.tzinfo is UTC and e.updated_at.tzinfo is UTC
    at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    await claim(store)
    await store.fail(
        i, owner="w1", category=ErrorCategory.TRANSIENT, code="x", message="m", retry_at=at
    )
    e = await store.get_entry(i)
    assert e is not None and e.next_attempt_at == at


async def _moves_of_every_kind(store: Store) -> dict[TallyKey, int]:
    """Entries completed, failed, excluded, queued twice and released; the counts they make."""
    ids = await store.enqueue([change("a"), change("b"), change("c"), change("d")])
    got = await store.claim_pending(IN, limit=4, owner="w1", lease_seconds=60)
    assert len(got) == 4
    await store.complete(ids[0], owner="w1", transferred={})
    await store.fail(ids[1], owner="w1", category=ErrorCategory.VALIDATION, code="E", message="bad")
    await store.exclude(ids[2], owner="w1", reason="filtered: no sync tag")
    await store.enqueue([change("d", {"x": 2}), change("e")])  # d in flight: a 2nd entry
    await store.release([ids[3]], owner="w1")  # merges into d's new pending entry
    c = "contact"
    return {
        (c, "inbound", "processed", "", ""): 1,
        (c, "inbound", "error", "validation", ""): 1,
        (c, "inbound", "excluded", "", "filtered: no sync tag"): 1,
        (c, "inbound", "pending", "", ""): 2,
    }


async def test_maintained_counts_follow_every_move_and_rebuild_alike(store: Store) -> None:
    want = await _moves_of_every_kind(store)
    assert await store.queue_tallies() == want
    assert await store.counts() == {
        (IN, EntryStatus.PROCESSED): 1,
        (IN, EntryStatus.ERROR): 1,
        (IN, EntryStatus.EXCLUDED): 1,
        (IN, EntryStatus.PENDING): 2,
    }
    await store.recount_tallies()  # what migration 4 does on an existing queue
    assert await store.queue_tallies() == want


@SQL_ONLY
async def test_recount_rebuilds_queue_tallies_lost_to_a_hand_edit(store: SqlStore) -> None:
    want = await _moves_of_every_kind(store)
    assert await store.queue_tallies() == want
    await store._run(lambda tx: tx.execute("DELETE FROM queue_tallies"))
    assert await store.queue_tallies() == {}
    await store.recount_tallies()
    assert await store.queue_tallies() == want


async def _links_inserted_and_changed(store: Store) -> dict[tuple[ObjectType, str], int]:
    """Links inserted, re-statused by upsert and by link_and_complete; the counts they make."""
    await store.upsert_link(RecordLink(CONTACT, hub_id="1", crm_id="003A", email="a@x.io"))
    await store.upsert_link(RecordLink(CONTACT, hub_id="2", crm_id="003B", email="b@x.io"))
    await store.upsert_link(RecordLink(LEAD, hub_id=None, crm_id="00QA", email="c@x.io"))
    await store.upsert_link(
        RecordLink(CONTACT, hub_id="2", crm_id="003B", status="deleted", deleted_side="hub")
    )
    ids = await store.enqueue([change("00QA", direction=OUT), change("00QB", direction=OUT)])
    await store.claim_pending(OUT, limit=5, owner="w1", lease_seconds=60)
    synced = [
        SyncedRecord(ids[0], RecordLink(LEAD, hub_id="3", crm_id="00QA", status="converted")),
        SyncedRecord(ids[1], RecordLink(LEAD, hub_id="4", crm_id="00QB")),
    ]
    assert await store.link_and_complete(synced, owner="w1") == 2
    return {
        (CONTACT, "linked"): 1,
        (CONTACT, "deleted"): 1,
        (LEAD, "converted"): 1,
        (LEAD, "linked"): 1,
    }


async def test_maintained_link_counts_follow_inserts_and_status_changes(store: Store) -> None:
    want = await _links_inserted_and_changed(store)
    assert await store.link_counts() == want
    await store.recount_tallies()
    assert await store.link_counts() == want


@SQL_ONLY
async def test_recount_rebuilds_link_tallies_lost_to_a_hand_edit(store: SqlStore) -> None:
    want = await _links_inserted_and_changed(store)
    assert await store.link_counts() == want
    await store._run(lambda tx: tx.execute("DELETE FROM link_tallies"))
    assert await store.link_counts() == {}
    await store.recount_tallies()
    assert await store.link_counts() == want


async def test_settled_changes_are_recorded_once_in_their_final_status(store: Store) -> None:
    run_id = await store.start_run(RunKind.PULL, RunTrigger.MANUAL, name="contact")
    a = change(
        "003A", {"FirstName": "Ann"}, direction=OUT, email="a@x.io", name="Ann A", source="pull"
    )
    b = change("003B", {"FirstName": "Bob"}, direction=OUT, email="b@x.io", source="pull")
    c = change("003C", {"FirstName": "Cy"}, direction=OUT, source="pull")
    d = change("003D", {"FirstName": "Di"}, direction=OUT, email="d@x.io", source="pull")
    settled = [
        SettledChange(
            a,
            EntryStatus.PROCESSED,
            link=RecordLink(CONTACT, hub_id="7", crm_id="003A", email="A@x.io", content_hash="h"),
            transferred={"object": "contact", "fields": {"firstName": "Ann"}, "created": True},
            skipped={"phone": "the hub's value wins"},
        ),
        SettledChange(
            b,
            EntryStatus.ERROR,
            error_category=ErrorCategory.VALIDATION,
            error_code="HTTP_422",
            message="bad email",
        ),
        SettledChange(c, EntryStatus.EXCLUDED, message="no unique id: the record has no email"),
        SettledChange(d, EntryStatus.PROCESSED),  # unchanged: nothing sent, no link touched
    ]
    assert await store.record_settled(settled, run_id=run_id) == 4
    got = {e.record_key: e for e in await store.list_entries(EntryFilter(direction=OUT))}
    ea, eb, ec, ed = got["003A"], got["003B"], got["003C"], got["003D"]
    assert ea.status is EntryStatus.PROCESSED and ea.attempts == 0 and ea.run_id == run_id
    assert ea.transferred == settled[0].transferred
    assert ea.skipped_fields == {"phone": "the hub's value wins"}
    assert ea.payload == {"FirstName": "Ann"} and ea.changed_fields == {"FirstName"}
    assert (ea.email, ea.name, ea.source, ea.object) == ("a@x.io", "Ann A", "pull", CONTACT)
    assert ea.lease_owner is None and ea.error_category is None
    assert eb.status is EntryStatus.ERROR and eb.attempts == 1
    assert (eb.error_category, eb.error_code, eb.error_message) == (
        ErrorCategory.VALIDATION,
        "HTTP_422",
        "bad email",
    )
    assert ec.status is EntryStatus.EXCLUDED and ec.error_message.startswith("no unique id")
    assert ed.status is EntryStatus.PROCESSED and ed.transferred == {}
    link = await store.get_link(CONTACT, crm_id="003A")
    assert link is not None and link.hub_id == "7" and link.email == "a@x.io"
    assert await store.link_counts() == {(CONTACT, "linked"): 1}
    assert await store.pending_entries(OUT, ["003A", "003B", "003C", "003D"]) == {}
    want = {
        ("contact", "outbound", "processed", "", ""): 2,
        ("contact", "outbound", "error", "validation", ""): 1,
        ("contact", "outbound", "excluded", "", "no unique id: the record has no email"): 1,
    }
    assert await store.queue_tallies() == want
    # A settled error is an error like any other: the operator's retry queues it again.
    assert await store.retry([eb.id]) == 1
    [again] = await store.claim_pending(OUT, limit=5, owner="w1", lease_seconds=60)
    assert again.id == eb.id and again.payload == {"FirstName": "Bob"}
    want[("contact", "outbound", "error", "validation", "")] = 0
    want[("contact", "outbound", "processing", "", "")] = 1
    assert await store.queue_tallies() == {k: n for k, n in want.items() if n}
    # Rebuilt from the entries, the counts stay (rebuilt after the count tables were emptied
    # by hand: test_recount_rebuilds_*, SQL only).
    await store.recount_tallies()
    assert await store.queue_tallies() == {k: n for k, n in want.items() if n}


async def test_queued_keys_are_those_with_an_entry_pending_or_processing(
    store: Store,
) -> None:
    keys = ["003A", "003B", "003C", "003D", "003E"]
    ids = await store.enqueue([change(k, {"x": 1}, direction=OUT) for k in keys[:4]])
    await store.enqueue([change("003E", {"x": 1}, direction=IN)])  # another direction
    got = await store.claim_pending(OUT, limit=3, owner="w1", lease_seconds=60)
    assert [e.id for e in got] == ids[:3]
    await store.complete(ids[0], owner="w1", transferred={})
    await store.fail(ids[1], owner="w1", category=ErrorCategory.REJECTED, code="E", message="m")
    # 003A processed, 003B error, 003C processing, 003D pending, 003E inbound only
    assert await store.queued_keys(OUT, CONTACT, [*keys, "003Z"]) == {"003C", "003D"}
    assert await store.queued_keys(OUT, LEAD, keys) == set()
    assert await store.queued_keys(IN, CONTACT, keys) == {"003E"}
    assert await store.queued_keys(OUT, CONTACT, []) == set()


async def test_record_settled_refuses_unfinished_or_unkeyed_outcomes(store: Store) -> None:
    c = change("003A", {"x": 1}, direction=OUT)
    for bad in (
        SettledChange(c, EntryStatus.PENDING),
        SettledChange(c, EntryStatus.PROCESSING),
        SettledChange(c, EntryStatus.ERROR),  # no category
        SettledChange(c, EntryStatus.PROCESSED, link=RecordLink(CONTACT, None, None)),
    ):
        with pytest.raises(ValueError):
            await store.record_settled([bad])
    assert await store.record_settled([]) == 0
    assert await store.list_entries(EntryFilter()) == []
    assert await store.queue_tallies() == {}


# a random walk through the queue ------------------------------------------------------------
class QueueMachine(RuleBasedStateMachine):
    """Random intake, claims and outcomes; nothing enqueued is ever lost or duplicated."""

    target: tuple[str, str] = ("sqlite", "")
    KEYS = ("a", "b", "c")
    FIELDS = ("x", "y")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = make_store(self.target)
        self.run(self.store.open())
        if isinstance(self.store, SqlStore):
            # Every example reopens the test's one file or database; a memory store is new.
            for table in ("queue_entries", "queue_deletions", "queue_tallies"):
                self.run(self.store._run(lambda tx, t=table: tx.execute(f"DELETE FROM {t}")))
        self.counter = 0
        self.latest: dict[tuple[str, str], int] = {}
        self.delivered: dict[tuple[str, str], int] = {}
        self.claimed: dict[int, str] = {}  # entry id -> owner

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()

    @rule(
        batch=st.lists(
            st.tuples(st.sampled_from(KEYS), st.sampled_from(FIELDS)), min_size=1, max_size=4
        )
    )
    def enqueue(self, batch: list[tuple[str, str]]) -> None:
        changes = []
        for key, fld in batch:
            self.counter += 1
            self.latest[(key, fld)] = self.counter
            changes.append(change(key, {fld: self.counter}))
        self.run(self.store.enqueue(changes))

    @rule(owner=st.sampled_from(["w1", "w2"]), limit=st.integers(1, 3))
    def claim(self, owner: str, limit: int) -> None:
        got = self.run(self.store.claim_pending(IN, limit=limit, owner=owner, lease_seconds=60))
        for e in got:
            assert e.id not in self.claimed
            self.claimed[e.id] = owner

    @precondition(lambda self: bool(self.claimed))
    @rule(
        data=st.data(),
        outcome=st.sampled_from(["complete", "retry", "error", "exclude", "wrong"]),
    )
    def finish(self, data: st.DataObject, outcome: str) -> None:
        entry_id = data.draw(st.sampled_from(sorted(self.claimed)))
        owner = self.claimed[entry_id]
        entry = self.run(self.store.get_entry(entry_id))
        assert entry is not None and entry.status is EntryStatus.PROCESSING
        if outcome == "wrong":
            assert not self.run(self.store.complete(entry_id, owner="intruder", transferred={}))
            return
        del self.claimed[entry_id]
        if outcome == "exclude":
            assert self.run(self.store.exclude(entry_id, owner=owner, reason="filtered: test"))
            for fld, value in entry.payload.items():
                if self.latest[(entry.record_key, fld)] == value:
                    self.delivered[(entry.record_key, fld)] = value  # excluded on purpose
            return
        if outcome == "complete":
            assert self.run(self.store.complete(entry_id, owner=owner, transferred=entry.payload))
            for fld, value in entry.payload.items():
                if self.latest[(entry.record_key, fld)] == value:
                    self.delivered[(entry.record_key, fld)] = value
            return
        retry_at = datetime.now(UTC) - timedelta(seconds=1) if outcome == "retry" else None
        kw = {"category": ErrorCategory.TRANSIENT, "code": "c", "message": "m"}
        assert self.run(self.store.fail(entry_id, owner=owner, retry_at=retry_at, **kw))  # type: ignore[arg-type]

    @rule(
        key=st.sampled_from(KEYS),
        fld=st.sampled_from(FIELDS),
        outcome=st.sampled_from(["processed", "error", "excluded"]),
    )
    def settle_directly(self, key: str, fld: str, outcome: str) -> None:
        # A change sent without queueing (as an outbound pull does), recorded in its end state.
        # The caller only does so for a record with no entry pending or in flight: were one
        # queued, its older values must merge under these (the pull queues such records).
        if self.run(self.store.pending_entries(IN, [key])):
            return
        self.counter += 1
        self.latest[(key, fld)] = self.counter
        status = EntryStatus(outcome)
        category = ErrorCategory.REJECTED if status is EntryStatus.ERROR else None
        settled = SettledChange(
            change(key, {fld: self.counter}),
            status,
            error_category=category,
            message="filtered: direct" if status is EntryStatus.EXCLUDED else "m",
        )
        assert self.run(self.store.record_settled([settled])) == 1
        if status is not EntryStatus.ERROR:  # an error stays, to be retried
            self.delivered[(key, fld)] = self.counter

    @precondition(lambda self: bool(self.claimed))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        entry_id = data.draw(st.sampled_from(sorted(self.claimed)))
        owner = self.claimed.pop(entry_id)
        assert self.run(self.store.release([entry_id], owner=owner)) == 1

    @rule()
    def reclaim_all(self) -> None:
        n = self.run(self.store.reclaim_expired(datetime.now(UTC) + timedelta(hours=1)))
        assert n == len(self.claimed)
        self.claimed.clear()

    @rule()
    def retry_errors(self) -> None:
        self.run(self.store.retry_matching(EntryFilter()))

    @rule(data=st.data())
    def delete_pending(self, data: st.DataObject) -> None:
        entries = self.run(self.store.list_entries(EntryFilter(status=(EntryStatus.PENDING,))))
        if not entries:
            return
        entry = data.draw(st.sampled_from(entries))
        assert self.run(self.store.delete_pending(entry.id)) is EntryStatus.PENDING
        for fld, value in entry.payload.items():
            if self.latest[(entry.record_key, fld)] == value:
                self.delivered[(entry.record_key, fld)] = value  # the operator dropped it

    @invariant()
    def maintained_counts_match_the_entries(self) -> None:
        entries = self.run(self.store.list_entries(EntryFilter(), limit=10_000))
        want = Counter(
            tally_key(
                e.object.value,
                e.direction.value,
                e.status.value,
                e.error_category.value if e.error_category else None,
                e.error_message,
            )
            for e in entries
        )
        assert self.run(self.store.queue_tallies()) == dict(want)

    @invariant()
    def one_pending_entry_per_record_and_nothing_lost(self) -> None:
        entries = self.run(self.store.list_entries(EntryFilter(), limit=10_000))
        pending = [e.record_key for e in entries if e.status is EntryStatus.PENDING]
        assert len(pending) == len(set(pending))
        live = [e for e in entries if e.status is not EntryStatus.PROCESSED]
        for (key, fld), value in self.latest.items():
            held = any(e.record_key == key and e.payload.get(fld) == value for e in live)
            assert held or self.delivered.get((key, fld)) == value, (key, fld, value)

    @invariant()
    def one_entry_in_flight_per_record(self) -> None:
        # Two claimed entries of one record could reach the CRM in either order, the older
        # values last: a claim must pass over a record whose older entry is in flight.
        entries = self.run(self.store.list_entries(EntryFilter(), limit=10_000))
        flying = [e.record_key for e in entries if e.status is EntryStatus.PROCESSING]
        assert len(flying) == len(set(flying)), flying


def test_queue_state_machine(target: tuple[str, str]) -> None:
    QueueMachine.target = target
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=50,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


async def test_record_breakdown_counts_records_not_entries(store: Store) -> None:
    # 101 records failing three times each, in one or two categories; five records
    # excluded twice; the entries stay apart (303 error entries, 10 excluded ones).
    for round_ in range(3):
        await store.enqueue([change(f"r{i}", {"n": round_}) for i in range(101)])
        await store.enqueue(
            [change(f"x{i}", {"n": round_}) for i in range(5)] if round_ < 2 else []
        )
        got = await store.claim_pending(IN, limit=500, owner="w1", lease_seconds=60)
        assert len(got) == 101 + (5 if round_ < 2 else 0)
        for e in got:
            if e.record_key.startswith("x"):
                await store.exclude(e.id, owner="w1", reason="filtered: no sync tag")
                continue
            odd_last = round_ == 2 and int(e.record_key[1:]) % 2 == 0
            cat = ErrorCategory.VALIDATION if odd_last else ErrorCategory.REJECTED
            await store.fail(e.id, owner="w1", category=cat, code="E", message="no")
    tallies = await store.queue_tallies()
    assert tallies[("contact", "inbound", "error", "rejected", "")] == 101 + 101 + 50
    assert tallies[("contact", "inbound", "error", "validation", "")] == 51
    assert tallies[("contact", "inbound", "excluded", "", "filtered: no sync tag")] == 10
    got = await store.record_breakdown()
    assert got.totals == {(CONTACT, EntryStatus.ERROR): 101, (CONTACT, EntryStatus.EXCLUDED): 5}
    assert {(g.status, g.category, g.reason, g.count) for g in got.groups} == {
        (EntryStatus.ERROR, ErrorCategory.REJECTED, None, 101),
        (EntryStatus.ERROR, ErrorCategory.VALIDATION, None, 51),
        (EntryStatus.EXCLUDED, None, "filtered: no sync tag", 5),
    }
    # Retried, the records are no longer failing.
    errors = await store.list_entries(EntryFilter(status=(EntryStatus.ERROR,)), limit=1000)
    assert len(errors) == 303
    await store.retry([e.id for e in errors])
    after = await store.record_breakdown()
    assert after.totals == {(CONTACT, EntryStatus.EXCLUDED): 5}
