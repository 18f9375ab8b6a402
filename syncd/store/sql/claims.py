"""Claims in SQL: entries taken under a lease, leases kept and reclaimed, outcomes recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from syncd.model import Direction, ErrorCategory, ObjectType, QueueEntry
from syncd.store.sql.dialect import (
    Tx,
    as_utc,
    chunks,
    dump_json,
    marks,
    utcnow,
)
from syncd.store.sql.queue import ENTRY_COLS, IN_FLIGHT, QueueOps
from syncd.store.sql.tallies import TallyDelta, TallyKey, entry_key


class ClaimOps(QueueOps):
    """Claiming and the outcome methods of the QueueStore protocol in SQL."""

    async def claim_pending(
        self,
        direction: Direction,
        *,
        limit: int,
        owner: str,
        lease_seconds: float,
        now: datetime | None = None,
        obj: ObjectType | None = None,
    ) -> list[QueueEntry]:
        """Move up to `limit` due pending entries (oldest first) to processing under a lease.

        With `obj`, only entries of that object (an outbound pull drains its own).
        """
        if limit <= 0:
            return []
        at = as_utc(now) if now is not None else utcnow()
        expires = at + timedelta(seconds=lease_seconds)
        d = self.dialect

        async def op(tx: Tx) -> list[QueueEntry]:
            # Never-tried entries (NULL) sort first; the claim index serves this order.
            only = " AND object = ?" if obj is not None else ""
            params: tuple[Any, ...] = (str(direction), *((str(obj),) if obj else ()), d.ts(at))
            # A record whose older entry is still being sent waits: were both in flight at
            # once (two instances, or a dead owner's lease), the older values could land last.
            # Once that entry finishes or is reclaimed (merging into this one), it is claimable.
            rows = await tx.fetchall(
                f"SELECT {ENTRY_COLS} FROM queue_entries q WHERE status = 'pending'"
                f" AND direction = ?{only}"
                " AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
                f" AND NOT EXISTS ({IN_FLIGHT})"
                f" ORDER BY next_attempt_at, id LIMIT ?{d.skip_locked}",
                (*params, limit),
            )
            if not rows:
                return []
            stamp = utcnow()
            ids = [r[0] for r in rows]
            await tx.execute(
                "UPDATE queue_entries SET status = 'processing', pending_key = NULL,"
                " lease_owner = ?, lease_expires_at = ?, updated_at = ?"
                f" WHERE id IN ({marks(len(ids))})",
                (owner, d.ts(expires), d.ts(stamp), *ids),
            )
            delta = TallyDelta[TallyKey]()
            for r in rows:
                delta.move(entry_key(r), entry_key(r, "processing"))
            await self._apply_tallies(tx, delta)
            out = []
            lease_until, updated = d.ts(expires), d.ts(stamp)  # once, not per row
            for r in rows:
                row = list(r)
                row[10], row[13], row[14], row[22] = "processing", owner, lease_until, updated
                out.append(self._entry(row))
            return out

        return await self._run(op)

    async def complete(
        self,
        entry_id: int,
        *,
        owner: str,
        transferred: Mapping[str, Any],
        skipped: Mapping[str, str] | None = None,
        run_id: int | None = None,
    ) -> bool:
        """Mark an entry processed with the fields written; False if the lease was lost."""
        d = self.dialect

        async def op(tx: Tx) -> bool:
            held = await self._held_tallies(tx, [entry_id], owner)
            if not held:
                return False
            n = await tx.execute(
                "UPDATE queue_entries SET status = 'processed', transferred = ?, skipped = ?,"
                " run_id = COALESCE(?, run_id), lease_expires_at = NULL, next_attempt_at = NULL,"
                " error_category = NULL, error_code = NULL, error_message = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'processing' AND lease_owner = ?",
                (
                    dump_json(dict(transferred)),
                    dump_json(dict(skipped or {})),
                    run_id,
                    d.ts(utcnow()),
                    entry_id,
                    owner,
                ),
            )
            await self._moved(tx, held, "processed")
            return n > 0

        return await self._run(op)

    async def fail(
        self,
        entry_id: int,
        *,
        owner: str,
        category: ErrorCategory,
        code: str,
        message: str,
        retry_at: datetime | None = None,
        run_id: int | None = None,
    ) -> bool:
        """Record a failed attempt: back to pending at `retry_at`, else status error."""
        d = self.dialect

        async def op(tx: Tx) -> bool:
            status = "processing" if retry_at is not None else "error"
            held = await self._held_tallies(tx, [entry_id], owner)
            if not held:
                return False
            n = await tx.execute(
                "UPDATE queue_entries SET status = ?, attempts = attempts + 1,"
                " error_category = ?, error_code = ?, error_message = ?,"
                " run_id = COALESCE(?, run_id), lease_expires_at = NULL,"
                " next_attempt_at = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'processing' AND lease_owner = ?",
                (status, str(category), code, message, run_id, d.ts(utcnow()), entry_id, owner),
            )
            if n == 0:
                return False
            await self._moved(tx, held, status, str(category))
            if retry_at is not None:
                await self._to_pending(tx, [entry_id], due=retry_at)
            return True

        return await self._run(op, conflict_retry=True)

    async def exclude(
        self, entry_id: int, *, owner: str, reason: str, run_id: int | None = None
    ) -> bool:
        """Mark an entry excluded with the reason it does not sync."""
        d = self.dialect

        async def op(tx: Tx) -> bool:
            held = await self._held_tallies(tx, [entry_id], owner)
            if not held:
                return False
            n = await tx.execute(
                "UPDATE queue_entries SET status = 'excluded', error_category = NULL,"
                " error_code = 'excluded', error_message = ?, run_id = COALESCE(?, run_id),"
                " lease_expires_at = NULL, next_attempt_at = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'processing' AND lease_owner = ?",
                (reason, run_id, d.ts(utcnow()), entry_id, owner),
            )
            await self._moved(tx, held, "excluded", None, reason)
            return n > 0

        return await self._run(op)

    async def release(self, entry_ids: Sequence[int], *, owner: str) -> int:
        """Give claimed entries back to pending without counting an attempt."""
        if not entry_ids:
            return 0

        async def op(tx: Tx) -> int:
            ids: list[int] = []
            for part in chunks(list(entry_ids)):
                rows = await tx.fetchall(
                    f"SELECT id FROM queue_entries WHERE id IN ({marks(len(part))})"
                    f" AND status = 'processing' AND lease_owner = ?{self.dialect.for_update}",
                    (*part, owner),
                )
                ids += [int(r[0]) for r in rows]
            await self._to_pending(tx, ids, due=None, keep_due=True)
            return len(ids)

        return await self._run(op, conflict_retry=True)

    async def extend_leases(
        self, entry_ids: Sequence[int], *, owner: str, lease_seconds: float
    ) -> int:
        """Push the lease end of entries `owner` still holds to now + `lease_seconds`; how many."""
        if not entry_ids:
            return 0
        d = self.dialect
        until = d.ts(utcnow() + timedelta(seconds=lease_seconds))

        async def op(tx: Tx) -> int:
            n = 0
            for part in chunks(list(entry_ids)):
                n += await tx.execute(
                    "UPDATE queue_entries SET lease_expires_at = ?"
                    f" WHERE id IN ({marks(len(part))})"
                    " AND status = 'processing' AND lease_owner = ?",
                    (until, *part, owner),
                )
            return n

        return await self._run(op)

    async def held_leases(
        self, entry_ids: Sequence[int], *, owner: str, for_seconds: float
    ) -> set[int]:
        """The entries `owner` still holds with `for_seconds` of lease left."""
        if not entry_ids:
            return set()
        d = self.dialect
        until = d.ts(utcnow() + timedelta(seconds=for_seconds))

        async def op(tx: Tx) -> set[int]:
            held: set[int] = set()
            for part in chunks(list(entry_ids)):
                rows = await tx.fetchall(
                    f"SELECT id FROM queue_entries WHERE id IN ({marks(len(part))})"
                    " AND status = 'processing' AND lease_owner = ? AND lease_expires_at > ?",
                    (*part, owner, until),
                )
                held.update(int(r[0]) for r in rows)
            return held

        return await self._run(op, write=False)

    async def reclaim_expired(self, now: datetime | None = None) -> int:
        """Return processing entries whose lease expired to pending; how many."""
        at = as_utc(now) if now is not None else utcnow()

        async def op(tx: Tx) -> int:
            rows = await tx.fetchall(
                "SELECT id FROM queue_entries WHERE status = 'processing'"
                f" AND lease_expires_at < ? ORDER BY id LIMIT 1000{self.dialect.skip_locked}",
                (self.dialect.ts(at),),
            )
            ids = [int(r[0]) for r in rows]
            await self._to_pending(tx, ids, due=None, keep_due=True)
            return len(ids)

        total = 0
        while True:
            n = await self._run(op, conflict_retry=True)
            total += n
            if n < 1000:
                return total
