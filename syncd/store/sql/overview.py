"""Read-only aggregates for the sync overview (health view, restore previews).

Kept apart from queue.py/records.py so the overview's additions to the store stay in one
small mixin of `SqlStore`.
"""

from __future__ import annotations

from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType
from syncd.store.sql.dialect import Tx
from syncd.store.sql.links import link_conditions
from syncd.store.sql.tallies import TallyOps
from syncd.store.types import EntryGroup, LinkFilter


class OverviewOps(TallyOps):
    """Aggregate queries behind the overview's health view and restore preview."""

    async def entry_breakdown(self) -> list[EntryGroup]:
        """Queue entries grouped by object, direction, status, error category and reason."""
        return [
            EntryGroup(
                object=ObjectType(obj),
                direction=Direction(direction),
                status=EntryStatus(status),
                category=ErrorCategory(cat) if cat else None,
                reason=(reason or None) if status == EntryStatus.EXCLUDED.value else None,
                count=n,
            )
            for (obj, direction, status, cat, reason), n in (await self.queue_tallies()).items()
        ]

    async def count_links(self, filt: LinkFilter) -> int:
        """How many links match `filt`."""
        where, params = link_conditions(self.dialect, filt)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        async def op(tx: Tx) -> int:
            rows = await tx.fetchall(f"SELECT COUNT(*) FROM record_links{clause}", params)
            return int(rows[0][0]) if rows else 0

        return await self._run(op, write=False)
