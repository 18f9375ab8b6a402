"""The store's seams: one small protocol per idea, and `StateStore`, all of them together.

Three implementations pass one contract suite: SQLite and MariaDB (`sql/`) and the in-memory
store (`memory.py`). Every method is one transaction; driver errors leave a store only as
`StoreError`. A part of syncd that needs one idea of the store asks for its protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from syncd.model import (
    Change,
    Direction,
    EntryStatus,
    ErrorCategory,
    ObjectType,
    QueueEntry,
    RunKind,
    RunTrigger,
)
from syncd.store.types import (
    ChangeFeed,
    DbsyncRow,
    EntryFilter,
    EntryGroup,
    InstanceBeat,
    IntegrationErrorRecord,
    LinkFilter,
    PendingStats,
    RecordBreakdown,
    RecordLink,
    Run,
    RunFailure,
    SettledChange,
    SyncedRecord,
)


class QueueStore(Protocol):
    """The queue as the sync engine works it: enqueue (coalescing), claim under a lease,
    record outcomes, and what waits."""

    async def enqueue(self, changes: Sequence[Change], *, ids: bool = True) -> list[int]:
        """Commit changes in one transaction, coalescing each into its record's pending entry.

        Newer field values win and the changed-field set is the union. Returns entry ids in
        input order (equal ids where two changes coalesced); with ``ids=False`` an empty list,
        which spares the store a query when the caller has no use for them.
        """

    async def enqueue_stream(self, feed: ChangeFeed) -> None:
        """Group commit: `enqueue` the batches `feed` hands over, one transaction each, until
        it has none; a failed batch is settled with its StoreError and the stream goes on."""

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

    async def exclude(
        self, entry_id: int, *, owner: str, reason: str, run_id: int | None = None
    ) -> bool:
        """Mark an entry excluded with the reason it does not sync."""

    async def release(self, entry_ids: Sequence[int], *, owner: str) -> int:
        """Give claimed entries back to pending without counting an attempt."""

    async def extend_leases(
        self, entry_ids: Sequence[int], *, owner: str, lease_seconds: float
    ) -> int:
        """Push the lease end of entries `owner` still holds to now + `lease_seconds`; how many."""

    async def held_leases(
        self, entry_ids: Sequence[int], *, owner: str, for_seconds: float
    ) -> set[int]:
        """The entries among these that `owner` still holds with at least `for_seconds` of
        lease left: what a claimer may still write to a vendor (its fencing check)."""

    async def reclaim_expired(self, now: datetime | None = None) -> int:
        """Return processing entries whose lease expired to pending; how many."""

    async def pending_stats(self, direction: Direction) -> PendingStats:
        """Count and age of the oldest pending entry of a direction."""

    async def pending_entries(
        self, direction: Direction, record_keys: Sequence[str]
    ) -> dict[str, QueueEntry]:
        """The pending or processing entry per record key of a direction (newest wins)."""

    async def queued_keys(
        self, direction: Direction, obj: ObjectType, record_keys: Sequence[str]
    ) -> set[str]:
        """The record keys among these with an entry pending or processing."""


class QueueAdmin(Protocol):
    """The queue as an operator sees it: counts, entries, delete and retry."""

    async def counts(self) -> dict[tuple[Direction, EntryStatus], int]:
        """Entries by direction and status."""

    async def pending_by_object(self, direction: Direction) -> dict[ObjectType, int]:
        """Pending entries of a direction by object."""

    async def get_entry(self, entry_id: int) -> QueueEntry | None:
        """One entry, or None."""

    async def list_entries(
        self, filt: EntryFilter, *, before_id: int | None = None, limit: int = 100
    ) -> list[QueueEntry]:
        """Entries matching `filt`, newest first, with id < before_id (cursor paging)."""

    async def delete_pending(self, entry_id: int) -> EntryStatus | None:
        """Delete a pending entry (recording the deletion); else return its status unchanged.

        None when there is no such entry.
        """

    async def retry(self, entry_ids: Sequence[int]) -> int:
        """Put the given error entries back to pending, due now; how many moved."""

    async def retry_matching(self, filt: EntryFilter) -> int:
        """Put every error entry matching `filt` back to pending; how many moved."""


class LinkStore(Protocol):
    """Record links: which hub record is which CRM record, and how each last synced."""

    async def upsert_link(self, link: RecordLink) -> int:
        """Insert or update a link (matched by object + hub_id, or object + crm_id)."""

    async def get_link(
        self,
        obj: ObjectType,
        *,
        hub_id: str | None = None,
        crm_id: str | None = None,
        email: str | None = None,
    ) -> RecordLink | None:
        """Find a link by hub id, CRM id or (case-insensitive) email."""

    async def get_links(self, obj: ObjectType, crm_ids: Sequence[str]) -> dict[str, RecordLink]:
        """The links of these CRM ids, keyed by CRM id (one query per chunk, not per id)."""

    async def link_and_complete(
        self, records: Sequence[SyncedRecord], *, owner: str, run_id: int | None = None
    ) -> int:
        """Upsert each record's link (as `upsert_link`) and complete its entry (as `complete`),
        all in one transaction; how many entries were completed (lease still held)."""

    async def record_settled(
        self, settled: Sequence[SettledChange], *, run_id: int | None = None
    ) -> int:
        """Upsert the links of `settled` (as `upsert_link`) and insert each change's entry in
        its final status, all in one transaction; how many entries were inserted.

        Only for records with no entry pending or processing (the caller makes sure): an
        entry queued later merges with a retried one as if its values were the newer.
        """

    async def list_links(
        self, filt: LinkFilter, *, after_id: int | None = None, limit: int = 1000
    ) -> list[RecordLink]:
        """Links matching `filt` in id order, with id > after_id (streamable)."""

    async def mark_deleted(
        self, obj: ObjectType, side: str, ids: Sequence[str], *, at: datetime
    ) -> list[RecordLink]:
        """Mark the links of these records deleted on `side` ("crm": `ids` are CRM ids,
        "hub": hub ids) as seen at `at`; links already marked keep their mark. The links
        newly marked, as they are now."""


class OverviewStore(Protocol):
    """Maintained counts for the overview (health, link totals, restore previews)."""

    async def link_counts(self) -> dict[tuple[ObjectType, str], int]:
        """Links by object and status."""

    async def recount_tallies(self) -> None:
        """Rebuild the maintained counts from the entries and links (after hand edits)."""

    async def count_links(self, filt: LinkFilter) -> int:
        """How many links match `filt` (restore previews)."""

    async def entry_breakdown(self) -> list[EntryGroup]:
        """Queue entries grouped for the health view (see EntryGroup)."""

    async def record_breakdown(self) -> RecordBreakdown:
        """Distinct records with failing or excluded entries (see RecordBreakdown)."""


class RunStore(Protocol):
    """Runs (flush, pull, poll, dbsync) with their counts and failed rows."""

    async def start_run(
        self, kind: RunKind, trigger: RunTrigger, *, name: str | None = None, owner: str = ""
    ) -> int:
        """Record a run as started; its id."""

    async def finish_run(
        self, run_id: int, *, counts: Mapping[str, int], status: str, error: str | None = None
    ) -> None:
        """Record a run's end, counts and outcome."""

    async def interrupt_run(self, run_id: int, *, error: str) -> bool:
        """End a run still marked running as interrupted (its counts as last recorded);
        False if it ended meanwhile, which this leaves as it is."""

    async def get_run(self, run_id: int) -> Run | None:
        """One run."""

    async def list_runs(
        self, *, kind: RunKind | None = None, name: str | None = None, limit: int = 50
    ) -> list[Run]:
        """Most recent runs first."""

    async def running_run(self, kind: RunKind, name: str | None) -> Run | None:
        """The run of this kind and name still marked running, if any."""

    async def add_run_failures(self, failures: Sequence[RunFailure]) -> None:
        """Record failed rows/records of a run."""

    async def run_failures(
        self, run_id: int, *, after: int = 0, limit: int = 1000
    ) -> list[RunFailure]:
        """A run's failures in insertion order."""


class CursorStore(Protocol):
    """Named cursors and small flags (pull cursors, pause state)."""

    async def get_cursor(self, name: str) -> str | None:
        """A named cursor (e.g. ``outbound:contact``)."""

    async def set_cursor(self, name: str, value: str) -> None:
        """Store a named cursor."""


class IntegrationErrorStore(Protocol):
    """Integration-wide errors pausing a direction."""

    async def set_integration_error(
        self, direction: Direction, category: ErrorCategory, message: str
    ) -> None:
        """Record (or refresh) an integration-wide error; `since` keeps its first time."""

    async def clear_integration_error(
        self, direction: Direction, category: ErrorCategory | None = None
    ) -> int:
        """Clear a direction's integration errors (one category or all); how many."""

    async def integration_errors(self) -> list[IntegrationErrorRecord]:
        """Active integration-wide errors."""


class DbsyncLedger(Protocol):
    """What dbsync last wrote per source row."""

    async def dbsync_rows(self, dbsync: str, row_keys: Sequence[str]) -> dict[str, DbsyncRow]:
        """What the last runs wrote for these source rows."""

    async def upsert_dbsync_rows(self, rows: Sequence[DbsyncRow]) -> None:
        """Record what a run wrote (batched)."""

    async def dbsync_rows_not_seen(
        self, dbsync: str, run_id: int, *, after_key: str = "", limit: int = 1000
    ) -> list[DbsyncRow]:
        """Rows of this dbsync whose last run is older than `run_id` (gone from the source)."""

    async def delete_dbsync_rows(self, dbsync: str, row_keys: Sequence[str]) -> None:
        """Forget rows removed from the list."""

    async def count_dbsync_rows(self, dbsync: str) -> int:
        """How many source rows this dbsync has written."""


class JobLockStore(Protocol):
    """Named locks so a scheduled job runs on one instance at a time."""

    async def try_job_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take a named lock for a scheduled job unless another live owner holds it."""

    async def extend_job_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Extend a lock `owner` holds still (nobody took it over, even if it ran out);
        False once lost: the job must stop writing (its fencing check)."""

    async def release_job_lock(self, name: str, owner: str) -> None:
        """Release a named job lock held by `owner`."""


class InstanceStore(Protocol):
    """The daemons sharing the store: their heartbeats, each with the view it had."""

    async def beat(self, instance_id: str, started_at: datetime, view: Mapping[str, Any]) -> None:
        """Record that an instance is alive now, with its view of the shared state."""

    async def instances(self) -> list[InstanceBeat]:
        """Every instance that beat and was not forgotten, most recently seen first."""

    async def forget_instances(self, seen_before: datetime) -> int:
        """Drop instances last seen before a moment (long gone); how many."""


class SessionStore(Protocol):
    """Signed-in page sessions, by a hash of their secret part: valid while stored and
    unexpired; ending one (logout) holds for every instance on the store."""

    async def start_session(self, session_hash: str, expires_at: datetime) -> None:
        """Record a new session (and drop the ones already expired)."""

    async def session_valid(self, session_hash: str) -> bool:
        """True while the session is stored and not expired."""

    async def end_session(self, session_hash: str) -> bool:
        """End a session (logout); whether it was there."""


@runtime_checkable
class StateStore(
    QueueStore,
    QueueAdmin,
    LinkStore,
    OverviewStore,
    RunStore,
    CursorStore,
    IntegrationErrorStore,
    DbsyncLedger,
    JobLockStore,
    InstanceStore,
    SessionStore,
    Protocol,
):
    """Durable state of syncd: every idea above, behind one open/close."""

    kind: str

    async def open(self) -> None:
        """Connect and apply pending schema migrations (idempotent)."""

    async def close(self) -> None:
        """Release connections; safe to call twice."""

    async def ping(self) -> None:
        """Raise StoreError when the store cannot be reached."""

    async def schema_version(self) -> int:
        """The applied schema version."""
