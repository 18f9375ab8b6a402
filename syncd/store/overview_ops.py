"""Read-only aggregates for the sync overview (health view, restore previews).

Kept apart from queue.py/records.py so the overview's additions to the store stay in one
small mixin of `SqlStore`.
"""

from __future__ import annotations

from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType
from syncd.store.base import EntryGroup, LinkFilter
from syncd.store.dialect import SqlBase, Tx
from syncd.store.records import link_conditions


class OverviewOps(SqlBase):
    """Aggregate queries behind the overview's health view and restore preview."""

    async def entry_breakdown(self) -> list[EntryGroup]:
        """Queue entries grouped by object, direction, status, error category and reason."""

        async def op(tx: Tx) -> list[EntryGroup]:
            # Counts come from the covering index; only excluded entries are read for their
            # reason (error messages of other statuses are per record, not groups).
            counts = await tx.fetchall(
                "SELECT object, direction, status, error_category, COUNT(*) FROM queue_entries"
                " GROUP BY object, direction, status, error_category"
            )
            reasons = await tx.fetchall(
                "SELECT object, direction, error_category, error_message, COUNT(*)"
                " FROM queue_entries WHERE status = 'excluded'"
                " GROUP BY object, direction, error_category, error_message"
            )
            out = [
                EntryGroup(
                    object=ObjectType(r[0]),
                    direction=Direction(r[1]),
                    status=EntryStatus(r[2]),
                    category=ErrorCategory(r[3]) if r[3] else None,
                    reason=None,
                    count=int(r[4]),
                )
                for r in counts
                if r[2] != EntryStatus.EXCLUDED.value
            ]
            out += [
                EntryGroup(
                    object=ObjectType(r[0]),
                    direction=Direction(r[1]),
                    status=EntryStatus.EXCLUDED,
                    category=ErrorCategory(r[2]) if r[2] else None,
                    reason=r[3],
                    count=int(r[4]),
                )
                for r in reasons
            ]
            return out

        return await self._run(op, write=False)

    async def count_links(self, filt: LinkFilter) -> int:
        """How many links match `filt`."""
        where, params = link_conditions(self.dialect, filt)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        async def op(tx: Tx) -> int:
            rows = await tx.fetchall(f"SELECT COUNT(*) FROM record_links{clause}", params)
            return int(rows[0][0]) if rows else 0

        return await self._run(op, write=False)
