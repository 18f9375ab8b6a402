"""The queue half of the memory store: intake with coalescing, claims under leases, outcomes.

The rules are those of ``syncd/store/queue.py``: at most one pending entry per record; an
entry returning to pending while its record has a pending one is merged into the older of
the two (values folded in arrival order, so the newest win) and the absorbed one is recorded
as deleted; a record whose entry is in flight is not claimed again until it comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.model import Change, Direction, EntryStatus, ErrorCategory, ObjectType, QueueEntry
from syncd.store.fold import Fold
from syncd.store.memory.state import Entry, MemoryState, RecordKey, absorb_entry
from syncd.store.sql.dialect import as_utc, dump_json, utcnow
from syncd.store.sql.queue import pending_key, stream_batches
from syncd.store.types import ChangeFeed

_NEVER_TRIED = datetime.min.replace(tzinfo=UTC)


def _key_text(key: RecordKey) -> str:
    # The SQL stores order a batch's records by this text (new entries take their ids in
    # that order); the same order here keeps ids alike on every backend.
    return pending_key(key[0], key[1], key[2])


def _claim_order(e: Entry) -> tuple[datetime, int]:
    # As ORDER BY next_attempt_at, id: never-tried entries (NULL) first.
    return (e.next_attempt_at or _NEVER_TRIED, e.id)


class QueueOps(MemoryState):
    """Intake, claims and outcomes of the StateStore protocol, in memory."""

    # intake --------------------------------------------------------------------------------
    async def enqueue(self, changes: Sequence[Change], *, ids: bool = True) -> list[int]:
        """Commit changes at once, coalescing each into its record's pending entry."""
        self._live()
        if not changes:
            return []
        keys: list[RecordKey] = []
        groups: dict[RecordKey, Fold] = {}
        for c in changes:
            key = (Direction(c.direction), ObjectType(c.object), c.record_key)
            keys.append(key)
            fold = groups.get(key)
            if fold is None:
                groups[key] = Fold(
                    c.source, c.event, c.email, c.name, dict(c.fields), set(c.fields)
                )
            else:
                fold.absorb(
                    c.fields,
                    list(c.fields),
                    source=c.source,
                    event=c.event,
                    email=c.email,
                    name=c.name,
                )
        # Encoded first: a value JSON cannot hold fails the call before anything is written.
        texts = {key: dump_json(g.payload) for key, g in groups.items()}
        now, tick = utcnow(), self._tick()
        by_key: dict[RecordKey, int] = {}
        for key in sorted(groups, key=_key_text):
            g = groups[key]
            old_id = self._pending.get(key)
            if old_id is None:
                e = Entry(
                    id=next(self._entry_ids),
                    direction=key[0],
                    object=key[1],
                    record_key=key[2],
                    source=g.source,
                    event=g.event,
                    email=g.email,
                    name=g.name,
                    payload=texts[key],
                    changed=frozenset(g.changed),
                    status=EntryStatus.PENDING,
                    created_at=now,
                    updated_at=now,
                    arrived=tick,
                )
                self._add(e)
                by_key[key] = e.id
                continue
            old = self._entries[old_id]
            merged = Fold(old.source, old.event, old.email, old.name)
            absorb_entry(merged, old)
            merged.absorb(
                g.payload, g.changed, source=g.source, event=g.event, email=g.email, name=g.name
            )
            self._write_fold(old, merged)
            old.updated_at, old.arrived = now, tick
            by_key[key] = old.id
        return [by_key[k] for k in keys] if ids else []

    async def enqueue_stream(self, feed: ChangeFeed) -> None:
        """`enqueue` the feed's batches in turn until it has none, settling each (on the
        event loop, in the order taken; a StoreError settles its batch, the stream goes on)."""

        async def in_turn(changes: Sequence[Change], *, ids: bool) -> list[int]:
            # A SQL store waits for its database between batches and the loop serves others
            # meanwhile; this one never waits, and a feed that never runs dry (senders that
            # never stop) would starve the API and the flushes of every turn.
            await asyncio.sleep(0)
            return await self.enqueue(changes, ids=ids)

        await stream_batches(in_turn, feed)

    @staticmethod
    def _write_fold(e: Entry, fold: Fold) -> None:
        e.payload = dump_json(fold.payload)
        e.changed = frozenset(fold.changed)
        e.email, e.name, e.event, e.source = fold.email, fold.name, fold.event, fold.source

    # claims ----------------------------------------------------------------------------------
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
        self._live()
        if limit <= 0:
            return []
        at = as_utc(now) if now is not None else utcnow()
        expires = at + timedelta(seconds=lease_seconds)
        # A record whose older entry is still being sent waits: were both in flight at once,
        # the older values could land last.
        due = [
            e
            for e in self._pending_entries()
            if e.direction == direction
            and (obj is None or e.object == obj)
            and (e.next_attempt_at is None or e.next_attempt_at <= at)
            and not self._in_flight(e.key)
        ]
        due.sort(key=_claim_order)
        stamp = utcnow()
        out = []
        for e in due[:limit]:
            self._set_status(e, EntryStatus.PROCESSING)
            e.lease_owner, e.lease_expires_at, e.updated_at = owner, expires, stamp
            out.append(e.snapshot())
        return out

    # outcomes --------------------------------------------------------------------------------
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
        self._live()
        e = self._held(entry_id, owner)
        if e is None:
            return False
        self._complete(e, dump_json(dict(transferred)), dump_json(dict(skipped or {})), run_id)
        return True

    def _complete(self, e: Entry, transferred: str, skipped: str, run_id: int | None) -> None:
        # The lease owner stays on a finished entry, as in the SQL stores (who sent it).
        self._set_status(e, EntryStatus.PROCESSED)
        e.transferred, e.skipped = transferred, skipped
        self._settle(e, run_id)
        e.error_category = e.error_code = e.error_message = None

    @staticmethod
    def _settle(e: Entry, run_id: int | None) -> None:
        """What every outcome does besides its own columns: no lease, no due time."""
        e.run_id = run_id if run_id is not None else e.run_id
        e.lease_expires_at = e.next_attempt_at = None
        e.updated_at = utcnow()

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
        self._live()
        e = self._held(entry_id, owner)
        if e is None:
            return False
        e.attempts += 1
        e.error_category, e.error_code, e.error_message = ErrorCategory(category), code, message
        self._settle(e, run_id)
        if retry_at is None:
            self._set_status(e, EntryStatus.ERROR)
        else:
            self._to_pending([e], due=as_utc(retry_at))
        return True

    async def exclude(
        self, entry_id: int, *, owner: str, reason: str, run_id: int | None = None
    ) -> bool:
        """Mark an entry excluded with the reason it does not sync."""
        self._live()
        e = self._held(entry_id, owner)
        if e is None:
            return False
        self._set_status(e, EntryStatus.EXCLUDED)
        e.error_category, e.error_code, e.error_message = None, "excluded", reason
        self._settle(e, run_id)
        return True

    async def release(self, entry_ids: Sequence[int], *, owner: str) -> int:
        """Give claimed entries back to pending without counting an attempt."""
        self._live()
        held = [e for i in dict.fromkeys(entry_ids) if (e := self._held(i, owner)) is not None]
        self._to_pending(held, due=None, keep_due=True)
        return len(held)

    async def extend_leases(
        self, entry_ids: Sequence[int], *, owner: str, lease_seconds: float
    ) -> int:
        """Push the lease end of entries `owner` still holds to now + `lease_seconds`; how many."""
        self._live()
        until = utcnow() + timedelta(seconds=lease_seconds)
        n = 0
        for i in dict.fromkeys(entry_ids):
            e = self._held(i, owner)
            if e is not None:
                e.lease_expires_at = until
                n += 1
        return n

    async def held_leases(
        self, entry_ids: Sequence[int], *, owner: str, for_seconds: float
    ) -> set[int]:
        """The entries `owner` still holds with `for_seconds` of lease left."""
        self._live()
        until = utcnow() + timedelta(seconds=for_seconds)
        return {
            i
            for i in dict.fromkeys(entry_ids)
            if (e := self._held(i, owner)) is not None
            and e.lease_expires_at is not None
            and e.lease_expires_at > until
        }

    async def reclaim_expired(self, now: datetime | None = None) -> int:
        """Return processing entries whose lease expired to pending; how many."""
        self._live()
        at = as_utc(now) if now is not None else utcnow()
        expired = [
            e
            for e in self._flying_entries()
            if e.lease_expires_at is not None and e.lease_expires_at < at
        ]
        self._to_pending(expired, due=None, keep_due=True)
        return len(expired)

    # back to pending -------------------------------------------------------------------------
    def _to_pending(
        self, entries: Sequence[Entry], *, due: datetime | None, keep_due: bool = False
    ) -> None:
        """Make entries pending again, merging each with its record's pending entry if any.

        The oldest entry of a record survives (its attempts, error and age), but values are
        folded in the order they arrived, so the newest win even after earlier merges. With
        `keep_due` the merged entry is due when the earliest of them was (now if one was
        never tried); else at `due`.
        """
        members: dict[RecordKey, list[Entry]] = {}
        for e in sorted(entries, key=lambda e: e.id):
            members.setdefault(e.key, []).append(e)
        for key, group in members.items():
            waiting = self._pending.get(key)
            if waiting is not None:
                group.append(self._entries[waiting])
        now = utcnow()
        for key in sorted(members, key=_key_text):
            group = members[key]
            survivor = min(group, key=lambda e: e.id)
            in_order = sorted(group, key=lambda e: (e.arrived, e.id))
            if keep_due:
                dues = [e.next_attempt_at for e in in_order]
                next_at = (
                    None if any(d is None for d in dues) else min(d for d in dues if d is not None)
                )
            else:
                next_at = due
            fold = Fold(survivor.source, survivor.event, survivor.email, survivor.name)
            for member in in_order:
                absorb_entry(fold, member)
            for member in in_order:
                if member is not survivor:
                    self._drop(member, f"merged into {survivor.id}", now)
            self._set_status(survivor, EntryStatus.PENDING)
            self._write_fold(survivor, fold)
            survivor.next_attempt_at = next_at
            survivor.lease_owner = survivor.lease_expires_at = None
            survivor.updated_at, survivor.arrived = now, in_order[-1].arrived
