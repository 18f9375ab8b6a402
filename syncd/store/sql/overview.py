"""Read-only aggregates for the sync overview (health view, restore previews).

Kept apart from queue.py/records.py so the overview's additions to the store stay in one
small mixin of `SqlStore`.
"""

from __future__ import annotations

from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType
from syncd.store.sql.dialect import Tx
from syncd.store.sql.links import link_conditions
from syncd.store.sql.schema import TALLY_REASON_MAX
from syncd.store.sql.tallies import TallyOps
from syncd.store.types import EntryGroup, LinkFilter, RecordBreakdown

# The error and excluded entries, each with the category and reason its tally row has
# (`tally_key`): a category for errors only, a reason (clipped) for exclusions only.
_SETTLED_BAD = (
    "SELECT object, direction, status, record_key,"
    " CASE WHEN status = 'error' THEN COALESCE(error_category, '') ELSE '' END AS category,"
    " CASE WHEN status = 'excluded'"
    f" THEN SUBSTR(COALESCE(error_message, ''), 1, {TALLY_REASON_MAX}) ELSE '' END AS reason"
    " FROM queue_entries WHERE status IN ('error', 'excluded')"
)


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

    async def record_breakdown(self) -> RecordBreakdown:
        """Distinct records with error or excluded entries, by group and in total.

        Counted from the entries when asked (through the status index): the maintained
        tallies count entries, and a record's entries come and go in too many ways to keep
        a per-record count beside them."""

        async def op(tx: Tx) -> RecordBreakdown:
            groups = await tx.fetchall(
                "SELECT object, direction, status, category, reason, COUNT(DISTINCT record_key)"
                f" FROM ({_SETTLED_BAD}) AS bad"
                " GROUP BY object, direction, status, category, reason"
            )
            totals = await tx.fetchall(
                "SELECT object, status, COUNT(*) FROM (SELECT DISTINCT object, status,"
                f" direction, record_key FROM ({_SETTLED_BAD}) AS bad) AS records"
                " GROUP BY object, status"
            )
            return RecordBreakdown(
                tuple(
                    EntryGroup(
                        object=ObjectType(obj),
                        direction=Direction(direction),
                        status=EntryStatus(status),
                        category=ErrorCategory(cat) if cat else None,
                        reason=(reason or None) if status == EntryStatus.EXCLUDED.value else None,
                        count=int(n),
                    )
                    for obj, direction, status, cat, reason, n in groups
                ),
                {(ObjectType(o), EntryStatus(s)): int(n) for o, s, n in totals},
            )

        return await self._run(op, write=False)

    async def count_links(self, filt: LinkFilter) -> int:
        """How many links match `filt`."""
        where, params = link_conditions(self.dialect, filt)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        async def op(tx: Tx) -> int:
            rows = await tx.fetchall(f"SELECT COUNT(*) FROM record_links{clause}", params)
            return int(rows[0][0]) if rows else 0

        return await self._run(op, write=False)
