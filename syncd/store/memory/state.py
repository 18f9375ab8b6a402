"""What a MemoryStore holds, and the bookkeeping every part of it shares.

Queue entries are mutable `Entry` rows behind three indexes that play the part of the SQL
store's unique ``pending_key`` and its claim index: the pending entry of each record, the
entries of each record in flight, and every entry of each record. All changes of an entry's
status go through `MemoryState._set_status`, so the indexes cannot drift from the rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from syncd.errors import StoreError
from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType, QueueEntry
from syncd.store.fold import Fold
from syncd.store.sql.dialect import load_json, utcnow
from syncd.store.types import (
    DbsyncRow,
    InstanceBeat,
    IntegrationErrorRecord,
    RecordLink,
    Run,
    RunFailure,
)

RecordKey = tuple[Direction, ObjectType, str]  # direction, object, record key
LinkKey = tuple[ObjectType, str]  # object, hub id / CRM id / lower-cased email


@dataclass(slots=True)
class Entry:
    """One queue entry as stored: payload and outcomes kept as JSON text, as the SQL stores
    keep them, so what comes back is what a SQL store would give back (JSON values, a new
    dict on every read) and never the caller's own objects."""

    id: int
    direction: Direction
    object: ObjectType
    record_key: str
    source: str
    event: str
    email: str | None
    name: str | None
    payload: str
    changed: frozenset[str]
    status: EntryStatus
    created_at: datetime
    updated_at: datetime
    # When the values arrived, as a store-wide sequence number (the SQL stores' ``data_at``):
    # merges apply values in this order. A counter never ties nor steps back as a clock can.
    arrived: int
    attempts: int = 0
    next_attempt_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    error_category: ErrorCategory | None = None
    error_code: str | None = None
    error_message: str | None = None
    transferred: str | None = None
    skipped: str | None = None
    run_id: int | None = None

    @property
    def key(self) -> RecordKey:
        """The record this entry is about, in its direction."""
        return (self.direction, self.object, self.record_key)

    def snapshot(self) -> QueueEntry:
        """The entry as the protocol hands it out (a copy: changing it changes nothing here)."""
        return QueueEntry(
            id=self.id,
            direction=self.direction,
            object=self.object,
            record_key=self.record_key,
            source=self.source,
            event=self.event,
            email=self.email,
            name=self.name,
            payload=load_json(self.payload, {}),
            changed_fields=self.changed,
            status=self.status,
            attempts=self.attempts,
            next_attempt_at=self.next_attempt_at,
            lease_owner=self.lease_owner,
            lease_expires_at=self.lease_expires_at,
            error_category=self.error_category,
            error_code=self.error_code,
            error_message=self.error_message,
            transferred=load_json(self.transferred, {}),
            skipped_fields=load_json(self.skipped, {}),
            run_id=self.run_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


def absorb_entry(fold: Fold, e: Entry) -> None:
    """Fold a stored entry's values over what `fold` holds."""
    fold.absorb(
        load_json(e.payload, {}),
        e.changed,
        source=e.source,
        event=e.event,
        email=e.email,
        name=e.name,
    )


@dataclass(frozen=True)
class QueueDeletion:
    """An entry taken out of the queue (merged, superseded or deleted by an operator): the SQL
    stores' ``queue_deletions``, so nothing a sender delivered disappears without a trace."""

    entry: QueueEntry
    reason: str
    deleted_at: datetime


class MemoryState:
    """The containers of a MemoryStore and the index upkeep its parts share."""

    def __init__(self) -> None:
        self._open = False
        self._ticks = itertools.count(1)
        self._entry_ids = itertools.count(1)
        self._entries: dict[int, Entry] = {}  # by id; insertion order is id order
        self._pending: dict[RecordKey, int] = {}  # at most one pending entry per record
        self._flying: dict[RecordKey, set[int]] = {}  # entries being processed
        self._by_record: dict[RecordKey, set[int]] = {}  # every entry of a record
        self._deletions: list[QueueDeletion] = []
        self._last_link_id = 0  # not a counter: a call undone gives its new ids back
        self._links: dict[int, RecordLink] = {}  # by id; frozen values, replaced on update
        self._by_hub: dict[LinkKey, int] = {}
        self._by_crm: dict[LinkKey, int] = {}
        self._by_email: dict[LinkKey, set[int]] = {}  # emails are not unique
        self._run_ids = itertools.count(1)
        self._runs: dict[int, Run] = {}
        self._failures: dict[int, list[RunFailure]] = {}
        self._cursors: dict[str, str] = {}
        self._integration: dict[tuple[Direction, ErrorCategory], IntegrationErrorRecord] = {}
        self._dbsync_ids = itertools.count(1)
        self._dbsync: dict[str, dict[str, DbsyncRow]] = {}
        self._locks: dict[str, tuple[str, datetime]] = {}  # name -> owner, expires_at
        self._instances: dict[str, InstanceBeat] = {}
        self._sessions: dict[str, datetime] = {}  # session hash -> expires_at

    def _live(self) -> None:
        """Refuse work while closed, as a SQL store whose connection is gone does."""
        if not self._open:
            raise StoreError("memory store is not open")

    def _tick(self) -> int:
        """The arrival number of values written now (one per call: like one SQL ``now``)."""
        return next(self._ticks)

    # queue entries -----------------------------------------------------------------------
    def _add(self, e: Entry) -> None:
        self._entries[e.id] = e
        self._by_record.setdefault(e.key, set()).add(e.id)
        self._index(e)

    def _index(self, e: Entry) -> None:
        if e.status is EntryStatus.PENDING:
            held = self._pending.setdefault(e.key, e.id)
            # The SQL stores' unique pending_key would refuse this; here it is a bug.
            assert held == e.id, f"two pending entries of {e.key}: {held}, {e.id}"
        elif e.status is EntryStatus.PROCESSING:
            self._flying.setdefault(e.key, set()).add(e.id)

    def _unindex(self, e: Entry) -> None:
        if e.status is EntryStatus.PENDING:
            if self._pending.get(e.key) == e.id:
                del self._pending[e.key]
        elif e.status is EntryStatus.PROCESSING:
            ids = self._flying.get(e.key)
            if ids is not None:
                ids.discard(e.id)
                if not ids:
                    del self._flying[e.key]

    def _set_status(self, e: Entry, status: EntryStatus) -> None:
        if e.status is status:
            return
        self._unindex(e)
        e.status = status
        self._index(e)

    def _drop(self, e: Entry, reason: str, now: datetime | None = None) -> None:
        """Take an entry out of the queue, recording it with `reason`."""
        self._unindex(e)
        del self._entries[e.id]
        ids = self._by_record[e.key]
        ids.discard(e.id)
        if not ids:
            del self._by_record[e.key]
        self._deletions.append(QueueDeletion(e.snapshot(), reason, now or utcnow()))

    def _in_flight(self, key: RecordKey) -> bool:
        return key in self._flying

    def _held(self, entry_id: int, owner: str) -> Entry | None:
        """The entry if `owner` still holds it in processing (its lease was not lost)."""
        e = self._entries.get(entry_id)
        if e is None or e.status is not EntryStatus.PROCESSING or e.lease_owner != owner:
            return None
        return e

    def _pending_entries(self) -> Iterator[Entry]:
        return (self._entries[i] for i in self._pending.values())

    def _flying_entries(self) -> Iterator[Entry]:
        return (self._entries[i] for ids in self._flying.values() for i in ids)
