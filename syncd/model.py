"""The shared vocabulary: enums and frozen dataclasses that cross the seams."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar, cast

T = TypeVar("T")


class Direction(StrEnum):
    """Which way a change travels."""

    INBOUND = "inbound"  # hub -> crm
    OUTBOUND = "outbound"  # crm -> hub
    DBSYNC = "dbsync"  # mysql -> hub list


class ObjectType(StrEnum):
    """The kinds of record syncd moves."""

    CONTACT = "contact"
    LEAD = "lead"
    ACCOUNT = "account"
    OPPORTUNITY = "opportunity"


_RECORD_ID_MAX = 18  # vendors' numeric ids fit in 64 bits; nothing longer is an id


def is_numeric_id(value: str) -> bool:
    """A vendor's numeric record id: 1 to 18 ASCII digits (``str.isdigit`` also takes ``²``
    and every other Unicode digit, which no vendor issues)."""
    return 0 < len(value) <= _RECORD_ID_MAX and value.isascii() and value.isdigit()


class RunStatus(StrEnum):
    """How a run (flush, pull, dbsync) stands or ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped before its end (a stop, a kill): not a failure of it


class EntryStatus(StrEnum):
    """Life of a queue entry: pending -> processing -> processed | error, or excluded."""

    PENDING = "pending"
    PROCESSING = "processing"
    PROCESSED = "processed"
    ERROR = "error"
    EXCLUDED = "excluded"


class ErrorCategory(StrEnum):
    """Why a record or a direction failed; decides retry and the operator hint."""

    VALIDATION = "validation"
    DUPLICATE = "duplicate"
    CONVERTED_LEAD = "converted_lead"
    REJECTED = "rejected"
    TRANSIENT = "transient"
    AUTH = "auth"
    QUOTA = "quota"
    MAPPING = "mapping"
    STORE = "store"


class SyncTag(StrEnum):
    """Status markers a hub record carries; they decide what syncs."""

    ADDED_TO_SF_CONTACT = "added-to-salesforce-contact"
    ADDED_TO_SF_LEAD = "added-to-salesforce-lead"
    CREATED_FROM_SF_CONTACT = "created-from-salesforce-contact"
    CREATED_FROM_SF_LEAD = "created-from-salesforce-lead"
    SF_LEAD_CONVERTED = "salesforce-lead-converted-to-contact"


# The tags' meaning is shared: the vendors' webhook parsers pick the object by it, the
# engine's eligibility rules decide what syncs by it.
CONTACT_TAGS = frozenset(
    {SyncTag.ADDED_TO_SF_CONTACT, SyncTag.CREATED_FROM_SF_CONTACT, SyncTag.SF_LEAD_CONVERTED}
)
LEAD_TAGS = frozenset({SyncTag.ADDED_TO_SF_LEAD, SyncTag.CREATED_FROM_SF_LEAD})
ALL_SYNC_TAGS = frozenset(t.value for t in SyncTag)
HINT_KEY = "_hint_only"  # the payload is only a hint: re-read the record from the hub


def parse_tags(raw: object) -> frozenset[str]:
    """Tags from a list or a comma/semicolon separated string, trimmed, empties dropped."""
    if raw is None:
        return frozenset()
    items: Iterable[object]
    if isinstance(raw, str):
        items = raw.replace(";", ",").split(",")
    elif isinstance(raw, Iterable):
        items = raw
    else:
        return frozenset()
    return frozenset(s for s in (str(i).strip() for i in items) if s)


class WriteOp(StrEnum):
    """How a batch write treats existing records."""

    CREATE = "create"
    UPDATE = "update"
    UPSERT = "upsert"


class RunKind(StrEnum):
    """What a run in the store was."""

    FLUSH = "flush"
    PULL = "pull"
    POLL = "poll"
    DBSYNC = "dbsync"
    DBSYNC_TEST = "dbsync_test"


class RunTrigger(StrEnum):
    """Why a run started."""

    SIZE = "size"
    INTERVAL = "interval"
    MANUAL = "manual"
    DRAIN = "drain"
    SCHEDULE = "schedule"


@dataclass(frozen=True)
class Change:
    """One observed change of one record, on its way into the queue."""

    direction: Direction
    object: ObjectType
    record_key: str
    source: str
    fields: Mapping[str, Any]
    email: str | None = None
    name: str | None = None
    event: str = "update"


@dataclass(frozen=True)
class QueueEntry:
    """One record's pending or finished sync in one direction."""

    id: int
    direction: Direction
    object: ObjectType
    record_key: str
    source: str
    status: EntryStatus
    payload: Mapping[str, Any]
    changed_fields: frozenset[str]
    attempts: int
    email: str | None
    name: str | None
    event: str
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    error_category: ErrorCategory | None = None
    error_code: str | None = None
    error_message: str | None = None
    transferred: Mapping[str, Any] = field(default_factory=dict)
    skipped_fields: Mapping[str, str] = field(default_factory=dict)
    run_id: int | None = None

    @property
    def claimed_by(self) -> str:
        """The owner token of the claim that returned this entry: every outcome of it is
        recorded under this token, so a claim that lost the entry records nothing."""
        if self.lease_owner is None:
            raise ValueError(f"queue entry {self.id} is not claimed")
        return self.lease_owner


@dataclass(frozen=True)
class Record:
    """A record as read from a vendor: its id, its fields and when it last changed."""

    object: ObjectType
    id: str
    fields: Mapping[str, Any]
    modified_at: datetime | None = None
    created_at: datetime | None = None
    deleted: bool = False
    tags: frozenset[str] = frozenset()

    @property
    def email(self) -> str | None:
        """The record's email, whatever the vendor calls the field."""
        for key in ("email", "Email"):
            value = self.fields.get(key)
            if isinstance(value, str) and value:
                return value
        return None


@dataclass(frozen=True)
class Page:
    """One page of changed records and the cursor to resume after it."""

    records: tuple[Record, ...]
    cursor: str | None


@dataclass(frozen=True)
class DeletedRecord:
    """A record deleted on a vendor side."""

    object: ObjectType
    id: str
    deleted_at: datetime | None


# Builds a named tuple from all its values in C: `new_named_tuple(WriteItem, (fields, id))`.
# A named tuple's own constructor is a Python call (0.25 against 0.10 µs), paid per record
# of a big batch, so the per-row paths of dbsync and the bulk writes build them this way.
new_named_tuple = tuple.__new__


class WriteItem(NamedTuple):
    """One record to write: its fields, and its vendor id for updates.

    Named tuples (like WriteResult): a bulk write makes one per record, and a tuple is built
    in a fraction of a frozen dataclass's time (no ``object.__setattr__`` per field).
    """

    fields: Mapping[str, Any]
    id: str | None = None


class WriteResult(NamedTuple):
    """The outcome for one input record of a batch write, in input order."""

    ok: bool
    id: str | None = None
    created: bool = False
    error_category: ErrorCategory | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class FieldInfo:
    """A field the vendor knows about an object."""

    name: str
    type: str
    required: bool = False
    label: str | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class QuotaState:
    """API quota as last reported by the vendor."""

    used: int
    limit: int

    @property
    def remaining(self) -> int:
        """Calls left in the current window."""
        return max(self.limit - self.used, 0)


def builder(cls: type[T]) -> Callable[..., T]:
    """A keyword-only constructor of a frozen dataclass (without ``__post_init__``) that
    builds the same instance as ``cls(...)`` several times faster.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``; a pull
    builds a handful of these per record, so its hot paths fill the instance's dict at once.
    The signature is the dataclass's (defaults and factories included), keyword-only.
    """
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_MISSING": dataclasses.MISSING}
    params: list[str] = []
    lines: list[str] = []
    fields = dataclasses.fields(cast(Any, cls))
    names = [f.name for f in fields]
    for f in fields:
        if f.default is not dataclasses.MISSING:
            env[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_f_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            lines.append(f"    if {f.name} is _MISSING:\n        {f.name} = _f_{f.name}()")
        else:
            params.append(f.name)
    fill = ", ".join(f"{n!r}: {n}" for n in names)
    src = (
        f"def build_{cls.__name__}(*, {', '.join(params)}):\n"
        + "".join(line + "\n" for line in lines)
        + f"    o = _new(_cls)\n    o.__dict__.update({{{fill}}})\n    return o\n"
    )
    exec(src, env)  # as dataclasses writes __init__: generated once per class
    made: Callable[..., T] = env[f"build_{cls.__name__}"]
    return made
