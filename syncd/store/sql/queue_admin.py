"""Reading the queue and the operator's actions on it: listing, stats, delete, retry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from syncd.model import Direction, EntryStatus, ObjectType, QueueEntry
from syncd.store.sql.dialect import (
    LIKE_ESCAPE,
    Tx,
    chunks,
    dump_json,
    like_pattern,
    load_json,
    marks,
)
from syncd.store.sql.queue import ENTRY_COLS, IN_FLIGHT, QueueOps, pending_key
from syncd.store.types import EntryFilter, PendingStats

_RETRY_CHUNK = 500


class QueueAdminOps(QueueOps):
    """Queue reads and operator actions of the StateStore protocol."""

    # reading ---------------------------------------------------------------------------------
    async def pending_stats(self, direction: Direction) -> PendingStats:
        """Count and age of the oldest pending entry of a direction."""

        async def op(tx: Tx) -> PendingStats:
            row = await self._fetchone(
                tx,
                # Only what a claim could take now: records with an entry in flight wait.
                "SELECT COUNT(*), MIN(created_at) FROM queue_entries q"
                f" WHERE status = 'pending' AND direction = ? AND NOT EXISTS ({IN_FLIGHT})",
                (str(direction),),
            )
            assert row is not None
            return PendingStats(int(row[0]), self.dialect.from_ts(row[1]))

        return await self._run(op, write=False)

    async def counts(self) -> dict[tuple[Direction, EntryStatus], int]:
        """Entries by direction and status (from the maintained counts)."""
        out: dict[tuple[Direction, EntryStatus], int] = {}
        for (_obj, direction, status, _cat, _reason), n in (await self.queue_tallies()).items():
            key = (Direction(direction), EntryStatus(status))
            out[key] = out.get(key, 0) + n
        return out

    async def pending_by_object(self, direction: Direction) -> dict[ObjectType, int]:
        """Pending entries of a direction by object (from the maintained counts)."""
        out: dict[ObjectType, int] = {}
        for (obj, d, status, _cat, _reason), n in (await self.queue_tallies()).items():
            if d == direction.value and status == EntryStatus.PENDING.value:
                out[ObjectType(obj)] = out.get(ObjectType(obj), 0) + n
        return out

    async def get_entry(self, entry_id: int) -> QueueEntry | None:
        """One entry, or None."""

        async def op(tx: Tx) -> QueueEntry | None:
            row = await self._fetchone(
                tx, f"SELECT {ENTRY_COLS} FROM queue_entries WHERE id = ?", (entry_id,)
            )
            return self._entry(row) if row is not None else None

        return await self._run(op, write=False)

    def _entry_where(self, filt: EntryFilter) -> tuple[list[str], list[Any]]:
        d = self.dialect
        where: list[str] = []
        params: list[Any] = []
        if filt.status:
            where.append(f"status IN ({marks(len(filt.status))})")
            params += [str(s) for s in filt.status]
        for col, val in (
            ("direction", filt.direction),
            ("object", filt.object),
            ("source", filt.source),
            ("error_category", filt.error_category),
            ("run_id", filt.run_id),
        ):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val if isinstance(val, int) else str(val))
        for col, cmp, moment in (
            ("created_at", ">=", filt.created_after),
            ("created_at", "<", filt.created_before),
            ("updated_at", ">=", filt.updated_after),
            ("updated_at", "<", filt.updated_before),
        ):
            if moment is not None:
                where.append(f"{col} {cmp} ?")
                params.append(d.ts(moment))
        if filt.text:
            pattern = like_pattern(filt.text)
            where.append(f"(LOWER(email) LIKE ? {LIKE_ESCAPE} OR LOWER(name) LIKE ? {LIKE_ESCAPE})")
            params += [pattern, pattern]
        return where, params

    async def list_entries(
        self, filt: EntryFilter, *, before_id: int | None = None, limit: int = 100
    ) -> list[QueueEntry]:
        """Entries matching `filt`, newest first, with id < before_id (cursor paging)."""
        where, params = self._entry_where(filt)
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        async def op(tx: Tx) -> list[QueueEntry]:
            rows = await tx.fetchall(
                f"SELECT {ENTRY_COLS} FROM queue_entries{clause} ORDER BY id DESC LIMIT ?",
                (*params, max(limit, 0)),
            )
            return [self._entry(r) for r in rows]

        return await self._run(op, write=False)

    # operator actions ------------------------------------------------------------------------
    async def pending_entries(
        self, direction: Direction, record_keys: Sequence[str]
    ) -> dict[str, QueueEntry]:
        """The pending or processing entry per record key of a direction (newest wins)."""
        keys = sorted(set(record_keys))

        async def op(tx: Tx) -> dict[str, QueueEntry]:
            out: dict[str, QueueEntry] = {}
            for part in chunks(keys):
                rows = await tx.fetchall(
                    f"SELECT {ENTRY_COLS} FROM queue_entries WHERE direction = ?"
                    f" AND record_key IN ({marks(len(part))})"
                    " AND status IN ('pending', 'processing') ORDER BY id",
                    (str(direction), *part),
                )
                out.update({r[3]: self._entry(r) for r in rows})
            return out

        return await self._run(op, write=False)

    async def queued_keys(
        self, direction: Direction, obj: ObjectType, record_keys: Sequence[str]
    ) -> set[str]:
        """The record keys among these with an entry pending or processing."""
        wanted = sorted(set(record_keys))
        if not wanted:
            return set()
        by_pending = {pending_key(str(direction), str(obj), k): k for k in wanted}

        async def op(tx: Tx) -> set[str]:
            out: set[str] = set()
            # Pending: the unique pending_key index answers without reading a row.
            for part in chunks(sorted(by_pending)):
                rows = await tx.fetchall(
                    "SELECT pending_key FROM queue_entries"
                    f" WHERE pending_key IN ({marks(len(part))})",
                    part,
                )
                out.update(by_pending[r[0]] for r in rows)
            # Processing: few entries at any time (those being sent), found by the claim index.
            rows = await tx.fetchall(
                "SELECT record_key FROM queue_entries WHERE status = 'processing'"
                " AND direction = ? AND object = ?",
                (str(direction), str(obj)),
            )
            keys = set(wanted)
            out.update(r[0] for r in rows if r[0] in keys)
            return out

        return await self._run(op, write=False)

    async def delete_pending(self, entry_id: int) -> EntryStatus | None:
        """Delete a pending entry (recording the deletion); else return its status unchanged."""

        async def op(tx: Tx) -> EntryStatus | None:
            row = await self._fetchone(
                tx,
                f"SELECT {ENTRY_COLS} FROM queue_entries WHERE id = ?{self.dialect.for_update}",
                (entry_id,),
            )
            if row is None:
                return None
            status = EntryStatus(row[10])
            if status is EntryStatus.PENDING:
                await self._delete_entries(tx, [(row, "deleted")])
            return status

        return await self._run(op)

    async def retry(self, entry_ids: Sequence[int]) -> int:
        """Put the given error entries back to pending, due now; how many moved."""
        total = 0
        for part in chunks(list(entry_ids), _RETRY_CHUNK):
            total += await self._retry_where(f"id IN ({marks(len(part))})", list(part))
        return total

    async def retry_matching(self, filt: EntryFilter) -> int:
        """Put every error entry matching `filt` back to pending; how many moved."""
        if filt.status and EntryStatus.ERROR not in filt.status:
            return 0
        where, params = self._entry_where(replace(filt, status=()))
        clause = " AND ".join(where) if where else "1 = 1"
        total = 0
        while True:
            n = await self._retry_where(clause, params, limit=_RETRY_CHUNK)
            total += n
            if n < _RETRY_CHUNK:
                return total

    async def _retry_where(self, clause: str, params: list[Any], limit: int | None = None) -> int:
        """Move error entries matching `clause` to pending (attempts reset), one transaction."""
        lim = f" ORDER BY id LIMIT {int(limit)}" if limit else ""

        async def op(tx: Tx) -> int:
            rows = await tx.fetchall(
                f"SELECT id FROM queue_entries WHERE status = 'error' AND {clause}"
                f"{lim}{self.dialect.for_update}",
                params,
            )
            ids = [int(r[0]) for r in rows]
            for part in chunks(ids):
                await tx.execute(
                    f"UPDATE queue_entries SET attempts = 0 WHERE id IN ({marks(len(part))})", part
                )
            await self._to_pending(tx, await self._drop_superseded(tx, ids), due=None)
            return len(ids)

        return await self._run(op, conflict_retry=True)

    async def _drop_superseded(self, tx: Tx, ids: Sequence[int]) -> list[int]:
        """Take out of entries about to be retried the fields a later change of the same
        record carries that is in flight, sent or settled (a pending one is merged with them
        in arrival order): an old error retried must not send values older than what came
        since. Entries left with nothing are deleted as
        superseded; the ids still to retry."""
        own: dict[int, tuple[Any, ...]] = {}
        for part in chunks(list(ids)):
            for r in await tx.fetchall(
                f"SELECT {ENTRY_COLS}, COALESCE(data_at, created_at) FROM queue_entries"
                f" WHERE id IN ({marks(len(part))})",
                part,
            ):
                own[int(r[0])] = tuple(r)
        groups: dict[tuple[str, str], set[str]] = {}
        for r in own.values():
            groups.setdefault((r[1], r[2]), set()).add(r[3])
        later: dict[tuple[str, str, str], list[tuple[Any, int, Any]]] = {}
        for (direction, obj), keys in groups.items():
            for kpart in chunks(sorted(keys)):
                for oid, key, at, payload in await tx.fetchall(
                    "SELECT id, record_key, COALESCE(data_at, created_at), payload"
                    " FROM queue_entries WHERE direction = ? AND object = ?"
                    " AND status <> 'pending'"  # a pending one merges in arrival order
                    f" AND record_key IN ({marks(len(kpart))})",
                    (direction, obj, *kpart),
                ):
                    later.setdefault((direction, obj, key), []).append((at, int(oid), payload))
        keep: list[int] = []
        doomed: list[tuple[Sequence[Any], str]] = []
        for eid, r in own.items():
            mine = (r[23], eid)
            newer: set[str] = set()
            for at, oid, payload in later.get((r[1], r[2], r[3]), ()):
                if (at, oid) > mine:
                    newer.update(load_json(payload, {}))
            fields = load_json(r[8], {})
            if not newer & set(fields):
                keep.append(eid)
                continue
            left = {k: v for k, v in fields.items() if k not in newer}
            if not left:
                doomed.append((r[:23], "superseded"))
                continue
            changed = [f for f in load_json(r[9], []) if f not in newer]
            await tx.execute(
                "UPDATE queue_entries SET payload = ?, changed_fields = ? WHERE id = ?",
                (dump_json(left), dump_json(changed), eid),
            )
            keep.append(eid)
        if doomed:
            await self._delete_entries(tx, doomed)
        return keep
