"""The queue half of the SQL store: intake with coalescing, claims under leases, outcomes.

Invariant: at most one *pending* entry per (direction, object, record_key), enforced by the
UNIQUE ``pending_key`` column (set while pending, NULL otherwise). Whenever an entry returns
to pending while another pending entry of its record exists, the two are merged into the
older one (newer values win, changed fields united) and the absorbed row is recorded in
``queue_deletions`` — nothing a webhook delivered is ever dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from syncd.errors import StoreError
from syncd.model import Change, Direction, EntryStatus, ErrorCategory, ObjectType, QueueEntry
from syncd.store.fold import Fold
from syncd.store.sql.dialect import (
    Tx,
    chunks,
    dump_json,
    load_json,
    marks,
    utcnow,
)
from syncd.store.sql.tallies import TallyDelta, TallyKey, TallyOps, entry_key, tally_key
from syncd.store.types import ChangeFeed

ENTRY_COLS = (
    "id, direction, object, record_key, source, event, email, name, payload, changed_fields,"
    " status, attempts, next_attempt_at, lease_owner, lease_expires_at, error_category,"
    " error_code, error_message, transferred, skipped, run_id, created_at, updated_at"
)
_INSERT_ENTRY = (
    "INSERT INTO queue_entries (direction, object, record_key, source, event, email, name,"
    " payload, changed_fields, status, attempts, created_at, updated_at, pending_key, data_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)  # placeholders only: lets aiomysql fold executemany into one multi-row INSERT


# Another entry of the same record in flight (correlated on the outer alias ``q``).
IN_FLIGHT = (
    "SELECT 1 FROM queue_entries p WHERE p.direction = q.direction"
    " AND p.record_key = q.record_key AND p.object = q.object AND p.status = 'processing'"
)


# Enum members by stored value: a dict lookup instead of an Enum call per column per row.
_DIRECTIONS = {str(m.value): m for m in Direction}
_OBJECTS = {str(m.value): m for m in ObjectType}
_STATUSES = {str(m.value): m for m in EntryStatus}


@lru_cache(maxsize=256)
def _changed_fields(text: str | bytes | None) -> frozenset[str]:
    # The entries of one pull mostly share one list of changed fields (frozensets are
    # immutable, so one parse serves them all).
    return frozenset(load_json(text, []))


@lru_cache(maxsize=256)
def _changed_json(changed: frozenset[str]) -> str:
    return dump_json(sorted(changed))


def pending_key(direction: str, obj: str, record_key: str) -> str:
    """The value that makes one pending entry per record unique."""
    return f"{direction}:{obj}:{record_key}"


async def stream_batches(enqueue: Callable[..., Awaitable[list[int]]], feed: ChangeFeed) -> None:
    """`enqueue` the feed's batches in turn until it has none.

    The next batch is handed to the store in the same event-loop step in which the last one
    came back, and only then is the last one settled: each loop round between two commits
    (a busy round writes a dozen responses) would be time the store sits idle.
    """
    loop = asyncio.get_running_loop()
    batch = feed.take()
    while batch is not None:
        try:
            await enqueue(batch.changes, ids=False)
            error = None
        except StoreError as exc:
            error = exc
        except BaseException:
            # Cancelled (shutdown) or a bug: its senders must not wait for ever, nor get 2xx.
            stopped = StoreError("intake stopped before the change was committed")
            loop.call_soon(feed.settled, batch, stopped)
            raise
        done, batch = batch, feed.take()
        loop.call_soon(feed.settled, done, error)


class QueueOps(TallyOps):
    """Queue methods of the StateStore protocol, shared by both SQL backends."""

    def _entry(self, r: Sequence[Any]) -> QueueEntry:
        d = self.dialect
        created = d.from_ts(r[21])
        updated = d.from_ts(r[22])
        assert created is not None and updated is not None
        return QueueEntry(
            id=int(r[0]),
            direction=_DIRECTIONS[r[1]],
            object=_OBJECTS[r[2]],
            record_key=r[3],
            source=r[4],
            event=r[5],
            email=r[6],
            name=r[7],
            payload=load_json(r[8], {}),
            changed_fields=_changed_fields(r[9]),
            status=_STATUSES[r[10]],
            attempts=int(r[11]),
            next_attempt_at=d.from_ts(r[12]),
            lease_owner=r[13],
            lease_expires_at=d.from_ts(r[14]),
            error_category=ErrorCategory(r[15]) if r[15] else None,
            error_code=r[16],
            error_message=r[17],
            transferred=load_json(r[18], {}),
            skipped_fields=load_json(r[19], {}),
            run_id=int(r[20]) if r[20] is not None else None,
            created_at=created,
            updated_at=updated,
        )

    # intake --------------------------------------------------------------------------------
    async def enqueue(self, changes: Sequence[Change], *, ids: bool = True) -> list[int]:
        """Commit changes in one transaction, coalescing each into its record's pending entry."""
        if not changes:
            return []
        return await self._run(self.enqueue_op(changes, ids=ids), conflict_retry=True)

    async def enqueue_stream(self, feed: ChangeFeed) -> None:
        """Commit `feed`'s batches one after another (the SQLite store overrides this)."""
        await stream_batches(self.enqueue, feed)

    def enqueue_op(
        self, changes: Sequence[Change], *, ids: bool
    ) -> Callable[[Tx], Awaitable[list[int]]]:
        """The transaction function `enqueue` runs: coalesces `changes` into pending entries."""
        keys = [pending_key(c.direction, c.object, c.record_key) for c in changes]
        groups: dict[str, Fold] = {}
        heads: dict[str, Change] = {}  # each record's first change: its direction, object, key
        for key, c in zip(keys, changes, strict=True):
            g = groups.get(key)
            if g is None:
                # What absorbing `c` into an empty Fold gives, built directly (per change).
                groups[key] = Fold(
                    c.source, c.event, c.email, c.name, dict(c.fields), set(c.fields)
                )
                heads[key] = c
                continue
            g.absorb(
                c.fields, list(c.fields), source=c.source, event=c.event, email=c.email, name=c.name
            )
        ordered = sorted(groups)  # one lock order for every writer: fewer deadlocks

        async def op(tx: Tx) -> list[int]:
            now = self.dialect.ts_text(utcnow())  # three per row: text is cheap to send
            found = await self._pending_by_key(tx, ordered)
            updates: list[tuple[Any, ...]] = []
            inserts: list[tuple[Any, ...]] = []
            for key in ordered:
                g, head = groups[key], heads[key]
                old = found.get(key)
                if old is None:
                    inserts.append(
                        (
                            head.direction,
                            head.object,
                            head.record_key,
                            g.source,
                            g.event,
                            g.email,
                            g.name,
                            dump_json(g.payload),
                            _changed_json(frozenset(g.changed)),
                            "pending",
                            0,
                            now,
                            now,
                            key,
                            now,
                        )
                    )
                    continue
                m = Fold(old[1], old[2], old[3], old[4])
                m.absorb(
                    load_json(old[5], {}),
                    load_json(old[6], []),
                    source=old[1],
                    event=old[2],
                    email=old[3],
                    name=old[4],
                )
                m.absorb(
                    g.payload, g.changed, source=g.source, event=g.event, email=g.email, name=g.name
                )
                updates.append(
                    (
                        old[0],
                        dump_json(m.payload),
                        dump_json(sorted(m.changed)),
                        m.email,
                        m.name,
                        m.event,
                        m.source,
                        now,
                        now,
                    )
                )
            if updates:
                await self._bulk_update(
                    tx,
                    "queue_entries",
                    (
                        "payload",
                        "changed_fields",
                        "email",
                        "name",
                        "event",
                        "source",
                        "updated_at",
                        "data_at",
                    ),
                    updates,
                )
            by_key = {key: int(found[key][0]) for key in found}
            if inserts:
                await tx.executemany(_INSERT_ENTRY, inserts)
                if ids:  # right after the INSERT: SQLite reads last_insert_rowid()
                    new_keys = [k for k in ordered if k not in found]
                    by_key.update(await self._inserted_ids(tx, new_keys))
                delta = TallyDelta[TallyKey]()
                for row in inserts:
                    delta.add(tally_key(row[1], row[0], "pending", None, None))
                await self._apply_tallies(tx, delta)
            return [by_key[k] for k in keys] if ids else []

        return op

    async def _inserted_ids(self, tx: Tx, new_keys: Sequence[str]) -> dict[str, int]:
        """The ids of the pending entries just inserted for `new_keys` (in that order)."""
        if self.dialect.name == "sqlite":
            # One writer and AUTOINCREMENT: the rows took consecutive ids in the order given.
            last = int((await tx.fetchall("SELECT last_insert_rowid()"))[0][0])
            first = last - len(new_keys) + 1
            return {key: first + i for i, key in enumerate(new_keys)}
        out: dict[str, int] = {}
        for part in chunks(new_keys):
            rows = await tx.fetchall(
                "SELECT id, pending_key FROM queue_entries"
                f" WHERE pending_key IN ({marks(len(part))})",
                part,
            )
            out.update({r[1]: int(r[0]) for r in rows})
        return out

    async def _pending_by_key(self, tx: Tx, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """Pending rows (id, source, event, email, name, payload, changed, key) by key, locked."""
        out: dict[str, tuple[Any, ...]] = {}
        for part in chunks(keys):
            rows = await tx.fetchall(
                "SELECT id, source, event, email, name, payload, changed_fields, pending_key"
                f" FROM queue_entries WHERE pending_key IN ({marks(len(part))})"
                f" ORDER BY pending_key{self.dialect.for_update}",
                part,
            )
            out.update({r[7]: r for r in rows})
        return out

    async def _bulk_update(
        self, tx: Tx, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Set `columns` per row; each row is (id, *values). One statement per chunk."""
        if self.dialect.name == "sqlite":
            sets = ", ".join(f"{c} = ?" for c in columns)
            await tx.executemany(
                f"UPDATE {table} SET {sets} WHERE id = ?", [(*r[1:], r[0]) for r in rows]
            )
            return
        # MySQL runs executemany UPDATEs one round trip each; CASE folds a chunk into one.
        for part in chunks(rows, 200):
            params: list[Any] = []
            cases: list[str] = []
            for i, col in enumerate(columns, start=1):
                whens = " ".join("WHEN ? THEN ?" for _ in part)
                cases.append(f"{col} = CASE id {whens} END")
                for r in part:
                    params += [r[0], r[i]]
            params += [r[0] for r in part]
            await tx.execute(
                f"UPDATE {table} SET {', '.join(cases)} WHERE id IN ({marks(len(part))})", params
            )

    # claims ----------------------------------------------------------------------------------
    async def _to_pending(
        self, tx: Tx, ids: Sequence[int], *, due: datetime | None, keep_due: bool = False
    ) -> None:
        """Make entries pending again, merging each with its record's pending entry if any."""
        if not ids:
            return
        d = self.dialect
        members: dict[str, list[Sequence[Any]]] = {}
        for part in chunks(list(ids)):
            rows = await tx.fetchall(
                f"SELECT {ENTRY_COLS} FROM queue_entries WHERE id IN ({marks(len(part))})"
                f" ORDER BY id{d.for_update}",
                part,
            )
            for r in rows:
                members.setdefault(pending_key(r[1], r[2], r[3]), []).append(r)
        keys = sorted(members)
        for kpart in chunks(keys):
            found = await tx.fetchall(
                f"SELECT {ENTRY_COLS}, pending_key FROM queue_entries"
                f" WHERE pending_key IN ({marks(len(kpart))}) ORDER BY pending_key{d.for_update}",
                kpart,
            )
            for r in found:
                members[r[23]].append(r[:23])
        arrived = await self._data_times(tx, [int(r[0]) for g in members.values() for r in g])
        now = d.ts(utcnow())
        delta = TallyDelta[TallyKey]()
        doomed: list[tuple[Sequence[Any], str]] = []
        updates: list[tuple[Any, ...]] = []
        for key in keys:
            # The oldest entry survives (its attempts, error and age), but values are merged
            # in the order they arrived, so the newest win even after earlier merges.
            survivor = min(members[key], key=lambda r: int(r[0]))
            group = sorted(members[key], key=lambda r: (arrived[int(r[0])], int(r[0])))
            if keep_due:
                dues = [r[12] for r in group]
                next_at = None if any(v is None for v in dues) else min(dues)
            else:
                next_at = d.ts(due)
            m = Fold(survivor[4], survivor[5], survivor[6], survivor[7])
            for member in group:
                m.absorb(
                    load_json(member[8], {}),
                    load_json(member[9], []),
                    source=member[4],
                    event=member[5],
                    email=member[6],
                    name=member[7],
                )
            doomed += [(r, f"merged into {survivor[0]}") for r in group if r is not survivor]
            delta.move(entry_key(survivor), entry_key(survivor, "pending"))
            updates.append(
                (
                    survivor[0],
                    "pending",
                    key,
                    next_at,
                    None,
                    None,
                    dump_json(m.payload),
                    dump_json(sorted(m.changed)),
                    m.email,
                    m.name,
                    m.event,
                    m.source,
                    now,
                    arrived[int(group[-1][0])],
                )
            )
        if doomed:
            await self._delete_entries(tx, doomed)
        await self._bulk_update(
            tx,
            "queue_entries",
            (
                "status",
                "pending_key",
                "next_attempt_at",
                "lease_owner",
                "lease_expires_at",
                "payload",
                "changed_fields",
                "email",
                "name",
                "event",
                "source",
                "updated_at",
                "data_at",
            ),
            updates,
        )
        await self._apply_tallies(tx, delta)

    async def _data_times(self, tx: Tx, ids: Sequence[int]) -> dict[int, Any]:
        """When each entry's values arrived (created_at for rows older than the column)."""
        out: dict[int, Any] = {}
        for part in chunks(list(ids)):
            rows = await tx.fetchall(
                "SELECT id, COALESCE(data_at, created_at) FROM queue_entries"
                f" WHERE id IN ({marks(len(part))})",
                part,
            )
            out.update({int(r[0]): r[1] for r in rows})
        return out

    async def _delete_entries(self, tx: Tx, doomed: Sequence[tuple[Sequence[Any], str]]) -> None:
        """Delete entries (full ENTRY_COLS rows), recording each with its reason."""
        now = self.dialect.ts(utcnow())
        await tx.executemany(
            "INSERT INTO queue_deletions (entry_id, direction, object, record_key, status,"
            " payload, changed_fields, email, name, reason, deleted_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r[0], r[1], r[2], r[3], r[10], r[8], r[9], r[6], r[7], why, now)
                for r, why in doomed
            ],
        )
        ids = [int(r[0]) for r, _ in doomed]
        for part in chunks(ids):
            await tx.execute(f"DELETE FROM queue_entries WHERE id IN ({marks(len(part))})", part)
        delta = TallyDelta[TallyKey]()
        for r, _ in doomed:
            delta.add(entry_key(r), -1)
        await self._apply_tallies(tx, delta)
