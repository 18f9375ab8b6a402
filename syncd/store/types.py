"""Data crossing the store's seams: frozen dataclasses and named tuples, no behaviour."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from syncd.errors import StoreError
from syncd.model import (
    Change,
    Direction,
    EntryStatus,
    ErrorCategory,
    ObjectType,
    RunKind,
    RunTrigger,
)


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """Changes a store commits in one transaction; `ref` is the feed's own (who waits)."""

    changes: Sequence[Change]
    ref: Any = None


class ChangeFeed(Protocol):
    """Where a store takes intake batches from, and where it reports how each one ended."""

    def take(self) -> FeedBatch | None:
        """The next batch, or None: nothing waits (end the stream). Safe from any thread."""

    def settled(self, batch: FeedBatch, error: StoreError | None) -> None:
        """`batch` is committed (error None) or not at all; called on the event loop, in
        the order the batches were taken."""


@dataclass(frozen=True)
class RecordLink:
    """The pairing of one hub record and one CRM record, and how it last synced."""

    object: ObjectType
    hub_id: str | None
    crm_id: str | None
    email: str | None = None
    name: str | None = None
    sync_tags: frozenset[str] = frozenset()
    status: str = "linked"
    content_hash: str | None = None
    deleted_side: str | None = None  # "hub" | "crm" when deleted there since linking
    last_synced_at: datetime | None = None
    # The values both sides last agreed on, per mapped CRM field. None on an upsert keeps
    # the stored base. A store migrated from before bases existed seeds it from the last
    # values sent, in that entry's field names, and says which way they went in
    # `base_origin` ("inbound": CRM names, "outbound": hub names) until a sync rewrites it.
    base: Mapping[str, Any] | None = None
    base_origin: str | None = None
    deleted_at: datetime | None = None  # when the deletion on `deleted_side` was seen
    created_at: datetime | None = None
    updated_at: datetime | None = None
    id: int | None = None


@dataclass(frozen=True)
class SyncedRecord:
    """One entry written to the other side: the link to record (if any) and what went."""

    entry_id: int
    link: RecordLink | None
    transferred: Mapping[str, Any] = field(default_factory=dict)
    skipped: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SettledChange:
    """A change sent without queueing and its outcome: recorded once, as an entry already in
    its final status (processed, error or excluded), with the link to upsert (if any)."""

    change: Change
    status: EntryStatus
    link: RecordLink | None = None
    transferred: Mapping[str, Any] = field(default_factory=dict)
    skipped: Mapping[str, str] = field(default_factory=dict)
    error_category: ErrorCategory | None = None  # status error
    error_code: str | None = None  # status error
    message: str | None = None  # the error message, or the exclusion reason


@dataclass(frozen=True)
class EntryFilter:
    """Filters for paging through queue entries (all optional, combined with AND)."""

    status: Sequence[EntryStatus] = ()
    direction: Direction | None = None
    object: ObjectType | None = None
    source: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    text: str | None = None  # substring of email or name, case-insensitive
    error_category: ErrorCategory | None = None
    run_id: int | None = None


@dataclass(frozen=True)
class LinkFilter:
    """Filters for paging through record links."""

    object: ObjectType | None = None
    status: str | None = None
    deleted_side: str | None = None
    synced_after: datetime | None = None
    synced_before: datetime | None = None
    text: str | None = None


@dataclass(frozen=True)
class PendingStats:
    """What waits in one direction: how many entries and since when."""

    count: int
    oldest_created_at: datetime | None


@dataclass(frozen=True)
class Run:
    """One flush, pull, poll or dbsync run, with its counts."""

    id: int
    kind: RunKind
    trigger: RunTrigger
    name: str | None
    status: str  # running | succeeded | failed
    started_at: datetime
    finished_at: datetime | None
    counts: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class RunFailure:
    """One row or record a run could not sync, and why."""

    run_id: int
    key: str
    columns: tuple[str, ...]
    reason: str
    category: ErrorCategory
    email: str | None = None


@dataclass(frozen=True)
class IntegrationErrorRecord:
    """An integration-wide problem pausing one direction since a moment."""

    direction: Direction
    category: ErrorCategory
    message: str
    since: datetime
    updated_at: datetime


@dataclass(frozen=True)
class InstanceBeat:
    """One daemon sharing the store, as its last heartbeat left it: when it started, when
    it was last seen, and its view of the shared state then (paused directions, errors,
    when it last read them)."""

    id: str
    started_at: datetime
    seen_at: datetime
    view: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EntryGroup:
    """How many queue entries share object, direction, status, error category and reason.

    `reason` is the exclusion reason for excluded entries and None otherwise.
    """

    object: ObjectType
    direction: Direction
    status: EntryStatus
    category: ErrorCategory | None
    reason: str | None
    count: int


@dataclass(frozen=True)
class RecordBreakdown:
    """Records, not entries, with failing or excluded queue entries (the health view).

    `groups` are shaped as `EntryGroup`s of error and excluded entries, each `count` being
    how many distinct records (direction and record key) have such an entry; `totals` are
    the distinct records per object and status, so a record failing in two categories, or
    three times in one, counts once.
    """

    groups: tuple[EntryGroup, ...]
    totals: Mapping[tuple[ObjectType, EntryStatus], int]


class DbsyncRow(NamedTuple):
    """What dbsync last wrote for one source row: its hub contact and the values' hash.

    A named tuple rather than a dataclass: a run looks one up per source row, and the store
    builds them from its result rows in C (`tuple.__new__`), without a Python call per row.
    """

    dbsync: str
    row_key: str
    email: str
    hub_id: str | None
    content_hash: str
    run_id: int
    id: int = 0  # the store's id of the row (0 for a row not read from the store)
