"""Reading the memory store's queue and the operator's actions on it: listing, counts,
delete, retry (the rules of ``syncd/store/queue_admin.py``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType, QueueEntry
from syncd.store.memory.queue import QueueOps
from syncd.store.memory.state import Entry, QueueDeletion, RecordKey
from syncd.store.sql.dialect import as_utc, chunks, dump_json, load_json
from syncd.store.sql.tallies import TallyKey, tally_key
from syncd.store.types import EntryFilter, EntryGroup, PendingStats, RecordBreakdown

_RETRY_CHUNK = 500  # as the SQL stores: one batch of a big retry is merged at a time


def entry_matches(e: Entry, filt: EntryFilter) -> bool:
    """Whether an entry passes every condition of `filt` (as the SQL stores' WHERE)."""
    if filt.status and e.status not in filt.status:
        return False
    for have, want in (
        (e.direction, filt.direction),
        (e.object, filt.object),
        (e.source, filt.source),
        (e.error_category, filt.error_category),
        (e.run_id, filt.run_id),
    ):
        if want is not None and have != want:
            return False
    if filt.created_after is not None and e.created_at < as_utc(filt.created_after):
        return False
    if filt.created_before is not None and e.created_at >= as_utc(filt.created_before):
        return False
    if filt.updated_after is not None and e.updated_at < as_utc(filt.updated_after):
        return False
    if filt.updated_before is not None and e.updated_at >= as_utc(filt.updated_before):
        return False
    if filt.text:
        text = filt.text.lower()
        return any(v is not None and text in v.lower() for v in (e.email, e.name))
    return True


class QueueAdminOps(QueueOps):
    """Queue reads and operator actions of the StateStore protocol, in memory."""

    # counts ----------------------------------------------------------------------------------
    async def queue_tallies(self) -> dict[TallyKey, int]:
        """Entries per (object, direction, status, error category, exclusion reason)."""
        self._live()
        # Counted from the entries on every call: the SQL stores maintain these counts only
        # because counting a million rows per status request is slow; here it is not, and a
        # count that is never stored cannot drift from the entries.
        return dict(
            Counter(
                tally_key(e.object, e.direction, e.status, e.error_category, e.error_message)
                for e in self._entries.values()
            )
        )

    async def recount_tallies(self) -> None:
        """Nothing to rebuild: the counts are taken from the entries and links when read."""
        self._live()

    async def counts(self) -> dict[tuple[Direction, EntryStatus], int]:
        """Entries by direction and status."""
        out: dict[tuple[Direction, EntryStatus], int] = {}
        for (_obj, direction, status, _cat, _reason), n in (await self.queue_tallies()).items():
            key = (Direction(direction), EntryStatus(status))
            out[key] = out.get(key, 0) + n
        return out

    async def pending_by_object(self, direction: Direction) -> dict[ObjectType, int]:
        """Pending entries of a direction by object."""
        self._live()
        return dict(Counter(e.object for e in self._pending_entries() if e.direction == direction))

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
        """Distinct records with error or excluded entries, by group and in total."""
        self._live()
        groups: dict[TallyKey, set[str]] = {}
        totals: dict[tuple[ObjectType, EntryStatus], set[tuple[Direction, str]]] = {}
        for e in self._entries.values():
            if e.status not in (EntryStatus.ERROR, EntryStatus.EXCLUDED):
                continue
            key = tally_key(e.object, e.direction, e.status, e.error_category, e.error_message)
            groups.setdefault(key, set()).add(e.record_key)
            totals.setdefault((e.object, e.status), set()).add((e.direction, e.record_key))
        return RecordBreakdown(
            tuple(
                EntryGroup(
                    object=ObjectType(obj),
                    direction=Direction(direction),
                    status=EntryStatus(status),
                    category=ErrorCategory(cat) if cat else None,
                    reason=(reason or None) if status == EntryStatus.EXCLUDED.value else None,
                    count=len(keys),
                )
                for (obj, direction, status, cat, reason), keys in groups.items()
            ),
            {k: len(v) for k, v in totals.items()},
        )

    async def pending_stats(self, direction: Direction) -> PendingStats:
        """Count and age of the oldest pending entry of a direction."""
        self._live()
        # Only what a claim could take now: records with an entry in flight wait.
        ready = [
            e.created_at
            for e in self._pending_entries()
            if e.direction == direction and not self._in_flight(e.key)
        ]
        return PendingStats(len(ready), min(ready, default=None))

    # reading ---------------------------------------------------------------------------------
    async def get_entry(self, entry_id: int) -> QueueEntry | None:
        """One entry, or None."""
        self._live()
        e = self._entries.get(entry_id)
        return e.snapshot() if e is not None else None

    async def list_entries(
        self, filt: EntryFilter, *, before_id: int | None = None, limit: int = 100
    ) -> list[QueueEntry]:
        """Entries matching `filt`, newest first, with id < before_id (cursor paging)."""
        self._live()
        out: list[QueueEntry] = []
        if limit <= 0:
            return out
        for e in reversed(self._entries.values()):
            if before_id is not None and e.id >= before_id:
                continue
            if entry_matches(e, filt):
                out.append(e.snapshot())
                if len(out) >= limit:
                    break
        return out

    async def deleted_entries(self) -> list[QueueDeletion]:
        """Entries taken out of the queue, oldest first (the SQL stores' queue_deletions)."""
        self._live()
        return list(self._deletions)

    async def pending_entries(
        self, direction: Direction, record_keys: Sequence[str]
    ) -> dict[str, QueueEntry]:
        """The pending or processing entry per record key of a direction (newest wins).

        Across objects, as the SQL stores: the record key alone decides.
        """
        self._live()
        wanted = set(record_keys)
        live = [*self._pending_entries(), *self._flying_entries()]
        found = sorted(
            (e for e in live if e.direction == direction and e.record_key in wanted),
            key=lambda e: e.id,
        )
        return {e.record_key: e.snapshot() for e in found}

    async def queued_keys(
        self, direction: Direction, obj: ObjectType, record_keys: Sequence[str]
    ) -> set[str]:
        """The record keys among these with an entry pending or processing."""
        self._live()
        d, o = Direction(direction), ObjectType(obj)
        return {
            k for k in set(record_keys) if (d, o, k) in self._pending or self._in_flight((d, o, k))
        }

    # operator actions ------------------------------------------------------------------------
    async def delete_pending(self, entry_id: int) -> EntryStatus | None:
        """Delete a pending entry (recording the deletion); else return its status unchanged."""
        self._live()
        e = self._entries.get(entry_id)
        if e is None:
            return None
        status = e.status
        if status is EntryStatus.PENDING:
            self._drop(e, "deleted")
        return status

    async def retry(self, entry_ids: Sequence[int]) -> int:
        """Put the given error entries back to pending, due now; how many moved."""
        self._live()
        total = 0
        for part in chunks(list(entry_ids), _RETRY_CHUNK):
            found = (self._entries.get(i) for i in dict.fromkeys(part))
            errors = [e for e in found if e is not None and e.status is EntryStatus.ERROR]
            total += self._retry_entries(sorted(errors, key=lambda e: e.id))
        return total

    async def retry_matching(self, filt: EntryFilter) -> int:
        """Put every error entry matching `filt` back to pending; how many moved."""
        self._live()
        if filt.status and EntryStatus.ERROR not in filt.status:
            return 0
        others = replace(filt, status=())
        total = 0
        while True:
            batch: list[Entry] = []
            for e in self._entries.values():
                if e.status is EntryStatus.ERROR and entry_matches(e, others):
                    batch.append(e)
                    if len(batch) == _RETRY_CHUNK:
                        break
            n = self._retry_entries(batch)
            total += n
            if n < _RETRY_CHUNK:
                return total

    def _retry_entries(self, errors: Sequence[Entry]) -> int:
        """Move error entries to pending with their attempts reset; how many."""
        for e in errors:
            e.attempts = 0
        self._to_pending(self._drop_superseded(errors), due=None)
        return len(errors)

    def _drop_superseded(self, errors: Sequence[Entry]) -> list[Entry]:
        """Take out of entries about to be retried the fields that a later entry of the same
        record carries and that is in flight, sent or settled (a pending one is merged with
        them in arrival order): an old error retried must not send values older than what
        came since. Entries left with nothing are deleted as superseded; those still to retry.
        """
        fields_of: dict[int, set[str]] = {}  # read before any change, as one SQL query is
        records: set[RecordKey] = {e.key for e in errors}
        for key in records:
            for i in self._by_record.get(key, ()):
                other = self._entries[i]
                if other.status is not EntryStatus.PENDING:
                    fields_of[i] = set(load_json(other.payload, {}))
        later = {
            key: [
                (self._entries[i].arrived, i)
                for i in self._by_record.get(key, ())
                if i in fields_of
            ]
            for key in records
        }
        keep: list[Entry] = []
        doomed: list[Entry] = []
        for e in errors:
            mine = (e.arrived, e.id)
            newer: set[str] = set()
            for at, other_id in later[e.key]:
                if (at, other_id) > mine:
                    newer |= fields_of[other_id]
            fields = load_json(e.payload, {})
            if not newer & set(fields):
                keep.append(e)
                continue
            left = {k: v for k, v in fields.items() if k not in newer}
            if not left:
                doomed.append(e)
                continue
            e.payload = dump_json(left)
            e.changed = frozenset(f for f in e.changed if f not in newer)
            keep.append(e)
        for e in doomed:
            self._drop(e, "superseded")
        return keep
