"""Read-only aggregates for the sync overview (health view, restore previews).

Kept apart from queue.py/records.py so the overview's additions to the store stay in one
small mixin of `SqlStore`.
"""

from __future__ import annotations

from typing import Any

from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType
from syncd.store.base import EntryGroup, LinkFilter
from syncd.store.dialect import LIKE_ESCAPE, SqlBase, Tx, like_pattern


class OverviewOps(SqlBase):
    """Aggregate queries behind the overview's health view and restore preview."""

    async def entry_breakdown(self) -> list[EntryGroup]:
        """Queue entries grouped by object, direction, status, error category and reason."""

        async def op(tx: Tx) -> list[EntryGroup]:
            # Only excluded entries keep their reason: error messages are per record.
            rows = await tx.fetchall(
                "SELECT object, direction, status, error_category,"
                " CASE WHEN status = 'excluded' THEN error_message END AS reason, COUNT(*)"
                " FROM queue_entries"
                " GROUP BY object, direction, status, error_category,"
                " CASE WHEN status = 'excluded' THEN error_message END"
            )
            return [
                EntryGroup(
                    object=ObjectType(r[0]),
                    direction=Direction(r[1]),
                    status=EntryStatus(r[2]),
                    category=ErrorCategory(r[3]) if r[3] else None,
                    reason=r[4],
                    count=int(r[5]),
                )
                for r in rows
            ]

        return await self._run(op, write=False)

    async def count_links(self, filt: LinkFilter) -> int:
        """How many links match `filt`."""
        d = self.dialect
        where: list[str] = []
        params: list[Any] = []
        for col, val in (
            ("object", filt.object),
            ("status", filt.status),
            ("deleted_side", filt.deleted_side),
        ):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(str(val))
        if filt.synced_after is not None:
            where.append("last_synced_at >= ?")
            params.append(d.ts(filt.synced_after))
        if filt.synced_before is not None:
            where.append("last_synced_at < ?")
            params.append(d.ts(filt.synced_before))
        if filt.text:
            pattern = like_pattern(filt.text)
            where.append(f"(email LIKE ? {LIKE_ESCAPE} OR LOWER(name) LIKE ? {LIKE_ESCAPE})")
            params += [pattern, pattern]
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        async def op(tx: Tx) -> int:
            rows = await tx.fetchall(f"SELECT COUNT(*) FROM record_links{clause}", params)
            return int(rows[0][0]) if rows else 0

        return await self._run(op, write=False)
