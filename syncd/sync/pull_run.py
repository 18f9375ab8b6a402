"""What one pull carries from start to end (as dbsync's `Pass`): its object, settings,
mapping, run, counts and the batches on their way; and the words every part of it uses."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from syncd import metrics
from syncd.config import ObjectSyncSettings, Settings
from syncd.model import ObjectType, QueueEntry, SyncTag
from syncd.store.leases import JobLock
from syncd.sync.counts import RunCounts
from syncd.sync.flight import InFlight, Outcome, Unsettled
from syncd.sync.mapping import ObjectMapping

HUB_WRITES_IN_FLIGHT = 4
HUB_BATCH = 500  # two AC bulk imports or five HubSpot batch calls: fewer store round trips
LEAD_CONVERSION_FIELDS = (
    "IsConverted",
    "ConvertedDate",
    "ConvertedContactId",
    "ConvertedAccountId",
)
# People: CRM contacts and leads are hub contacts, tagged by where they came from.
NEW_TAG = {
    ObjectType.CONTACT: SyncTag.CREATED_FROM_SF_CONTACT.value,
    ObjectType.LEAD: SyncTag.CREATED_FROM_SF_LEAD.value,
}


@dataclass
class PullCounts(RunCounts):
    """What one pull did."""

    read: int = 0
    processed: int = 0
    skipped: int = 0
    excluded: int = 0
    errors: int = 0
    converted: int = 0
    deleted: int = 0  # links newly marked deleted in the CRM
    associated: int = 0  # hub records whose primary company was set or re-pointed


class PullNotDue(Exception):
    """A scheduled pull's tick came after another instance already ran this interval's."""


class PullNotStarted(Exception):
    """An on-demand pull ended before it took its lock (the daemon is stopping)."""


class PullBusy(Exception):
    """Another instance (or task) is running this pull right now."""


@dataclass
class PullRun:
    """One pull of one object, from its start to its recorded end."""

    obj: ObjectType
    settings: Settings
    object_settings: ObjectSyncSettings
    run_id: int
    # The pull's job lock: checked before every hub write (the fencing check).
    lock: JobLock
    counts: PullCounts = field(default_factory=PullCounts)
    # Hub writes of a pull in flight at once: enough to keep a hub's rate limit busy while
    # each call waits for its answer (an ActiveCampaign import takes seconds); the
    # connectors' limiters keep them within the limit itself.
    flight: InFlight = field(default_factory=lambda: InFlight(writing=HUB_WRITES_IN_FLIGHT))
    unsettled: Unsettled = field(default_factory=Unsettled)
    # Pulled records' accounts (CRM id -> AccountId), when the hub keeps primary companies:
    # set there once the records and their accounts are linked.
    accounts: dict[str, str] | None = None
    mapping: ObjectMapping = field(init=False)

    def __post_init__(self) -> None:
        self.mapping = ObjectMapping.from_settings(self.obj, self.object_settings)

    @property
    def hub_object(self) -> ObjectType:
        """What the hub keeps the object as (people are contacts there)."""
        return ObjectType.CONTACT if self.obj in NEW_TAG else self.obj

    def tally(self, outcomes: list[Outcome]) -> None:
        """Count recorded outcomes in the run and the metrics."""
        for kind, n in Counter(o.kind for o in outcomes).items():
            name = _COUNT_OF[kind]
            setattr(self.counts, name, getattr(self.counts, name) + n)
            metrics.RECORDS.labels("outbound", self.obj.value, kind).inc(n)


_COUNT_OF = {
    "processed": "processed",
    "skipped": "skipped",
    "excluded": "excluded",
    "error": "errors",
}


def cursor_name(obj: ObjectType) -> str:
    """The store cursor of an object's pulls."""
    return f"outbound:{obj.value}"


def is_conversion(e: QueueEntry) -> bool:
    """A queued lead that the CRM converted."""
    return e.object is ObjectType.LEAD and bool(e.payload.get("IsConverted"))
