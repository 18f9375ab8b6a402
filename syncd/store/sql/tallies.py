"""Maintained counts of queue entries and record links.

Counting a million-entry queue on every status request costs hundreds of milliseconds, so
every statement that adds, moves or removes queue entries adjusts ``queue_tallies`` (one row
per object, direction, status, error category and exclusion reason) in its own transaction,
and every link insert or status change adjusts ``link_tallies`` (object, status); status and
health read a handful of rows instead. Only what the overview groups by is kept: the category
of error entries and the reason of excluded ones. This is done in
the SQL manager rather than with triggers because MariaDB with binary logging refuses
``CREATE TRIGGER`` to users without SUPER.

On MySQL every intake transaction would add to the same (contact, inbound, pending) row and
hold its lock until COMMIT, so concurrent transactions (intake beside a flush claiming
pending entries, several daemon instances, pipelined intake batches) would wait for each
other's commit. ``queue_tallies`` rows are therefore
sharded: each transaction adds to the rows of one shard chosen at random, and reads sum the
shards. SQLite has a single writer and always uses shard 0.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, Generic, TypeVar

from syncd.model import ObjectType
from syncd.store.sql.dialect import SqlBase, Tx, chunks, marks
from syncd.store.sql.schema import TALLY_REASON_MAX, TALLY_REBUILD

TallyKey = tuple[str, str, str, str, str]  # object, direction, status, category, reason
LinkKey = tuple[str, str]  # object, status
K = TypeVar("K", TallyKey, LinkKey)


_QUEUE_KEYS = ("object", "direction", "status", "category", "reason")
TALLY_SHARDS = 8  # queue_tallies rows per key on MySQL (see the module docstring)


def tally_key(
    obj: str, direction: str, status: str, category: str | None, message: str | None
) -> TallyKey:
    """The tally row an entry with these values counts in."""
    cat = (category or "") if status == "error" else ""
    reason = (message or "")[:TALLY_REASON_MAX] if status == "excluded" else ""
    return (str(obj), str(direction), str(status), str(cat), reason)


def retally(key: TallyKey, status: str, category: str | None, message: str | None) -> TallyKey:
    """The key of the same entry after its status (and error values) change."""
    return tally_key(key[0], key[1], status, category, message)


def entry_key(row: Sequence[Any], status: str | None = None) -> TallyKey:
    """The tally key of a full ``ENTRY_COLS`` row (optionally as if it had `status`)."""
    return tally_key(row[2], row[1], status or row[10], row[15], row[17])


class TallyDelta(Generic[K]):
    """The count changes of one transaction, applied together in one fixed key order."""

    def __init__(self) -> None:
        self._n: Counter[K] = Counter()

    def add(self, key: K, n: int = 1) -> None:
        """Count `n` more rows under `key` (negative: fewer)."""
        self._n[key] += n

    def move(self, before: K, after: K) -> None:
        """One row changed from `before` to `after`."""
        if before != after:
            self._n[before] -= 1
            self._n[after] += 1

    def changes(self) -> list[tuple[K, int]]:
        """Non-zero changes, sorted: every writer locks tally rows in the same order."""
        return sorted((k, n) for k, n in self._n.items() if n)


@lru_cache(maxsize=16)
def _add_counts_sql(dialect: str, table: str, keys: tuple[str, ...]) -> str:
    cols = ", ".join(keys)
    head = f"INSERT INTO {table} ({cols}, n) VALUES ({', '.join('?' for _ in keys)}, ?)"
    if dialect == "mysql":
        return f"{head} ON DUPLICATE KEY UPDATE n = n + VALUES(n)"
    return f"{head} ON CONFLICT ({cols}) DO UPDATE SET n = n + excluded.n"


class TallyOps(SqlBase):
    """Applying and reading the maintained queue counts."""

    async def _apply_tallies(self, tx: Tx, delta: TallyDelta[TallyKey]) -> None:
        changes = delta.changes()
        if not changes:
            return
        # One shard for the whole transaction, its rows locked in key order: two
        # transactions on the same shard lock in the same order, so they cannot deadlock.
        shard = random.randrange(TALLY_SHARDS) if self.dialect.name == "mysql" else 0
        await self._add_counts(
            tx, "queue_tallies", (*_QUEUE_KEYS, "shard"), [((*k, shard), n) for k, n in changes]
        )

    async def _apply_link_tallies(self, tx: Tx, delta: TallyDelta[LinkKey]) -> None:
        await self._add_counts(tx, "link_tallies", ("object", "status"), delta.changes())

    async def _add_counts(
        self,
        tx: Tx,
        table: str,
        keys: Sequence[str],
        changes: Sequence[tuple[tuple[Any, ...], int]],
    ) -> None:
        if not changes:
            return
        sql = _add_counts_sql(self.dialect.name, table, tuple(keys))
        await tx.executemany(sql, [(*k, n) for k, n in changes])

    async def _held_tallies(self, tx: Tx, ids: Sequence[int], owner: str) -> dict[int, TallyKey]:
        """Tally keys of the entries among `ids` that `owner` holds in processing, locked."""
        out: dict[int, TallyKey] = {}
        for part in chunks(list(ids)):
            rows = await tx.fetchall(
                "SELECT id, object, direction, status, error_category, error_message"
                f" FROM queue_entries WHERE id IN ({marks(len(part))})"
                f" AND status = 'processing' AND lease_owner = ?{self.dialect.for_update}",
                (*part, owner),
            )
            out.update({int(r[0]): tally_key(r[1], r[2], r[3], r[4], r[5]) for r in rows})
        return out

    async def _moved(
        self,
        tx: Tx,
        held: dict[int, TallyKey],
        status: str,
        category: str | None = None,
        message: str | None = None,
    ) -> None:
        """Count the `held` entries as moved to `status` (with these error values)."""
        delta = TallyDelta[TallyKey]()
        for key in held.values():
            delta.move(key, retally(key, status, category, message))
        await self._apply_tallies(tx, delta)

    async def _read_tallies(
        self, tx: Tx, where: str = "", params: Iterable[Any] = ()
    ) -> list[tuple[TallyKey, int]]:
        rows = await tx.fetchall(
            f"SELECT {', '.join(_QUEUE_KEYS)}, SUM(n) FROM queue_tallies WHERE n <> 0{where}"
            f" GROUP BY {', '.join(_QUEUE_KEYS)} HAVING SUM(n) <> 0",
            tuple(params),
        )
        return [((r[0], r[1], r[2], r[3], r[4]), int(r[5])) for r in rows]

    async def queue_tallies(self) -> dict[TallyKey, int]:
        """Entries per (object, direction, status, error category, exclusion reason)."""

        async def op(tx: Tx) -> dict[TallyKey, int]:
            return dict(await self._read_tallies(tx))

        return await self._run(op, write=False)

    async def link_counts(self) -> dict[tuple[ObjectType, str], int]:
        """Links by object and status (from the maintained counts)."""

        async def op(tx: Tx) -> dict[tuple[ObjectType, str], int]:
            rows = await tx.fetchall("SELECT object, status, n FROM link_tallies WHERE n <> 0")
            return {(ObjectType(r[0]), str(r[1])): int(r[2]) for r in rows}

        return await self._run(op, write=False)

    async def recount_tallies(self) -> None:
        """Rebuild the maintained counts from the entries and links (after hand edits)."""

        async def op(tx: Tx) -> None:
            for stmt in TALLY_REBUILD:
                await tx.execute(stmt)

        await self._run(op)
