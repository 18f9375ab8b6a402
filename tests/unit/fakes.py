"""In-memory vendors and a harness for unit tests of the sync engine: the real flusher and
puller on the in-memory store, a CRM and a hub that keep records in dicts and count calls.

The fakes keep what the sync relies on and nothing else: the CRM reads by id, by email
and by modification time and refuses a Contact without LastName; the hub reads contacts
with their tags and matches writes by email. The simulators (tests/integration, e2e)
check the vendors' real shapes.
"""

from __future__ import annotations

import itertools
import tomllib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.config import Settings
from syncd.model import (
    Change,
    DeletedRecord,
    Direction,
    ErrorCategory,
    FieldInfo,
    ObjectType,
    Page,
    QuotaState,
    Record,
    RunTrigger,
    WriteItem,
    WriteOp,
    WriteResult,
)
from syncd.rules import Group, Op, Rule
from syncd.store.memory import MemoryStore
from syncd.sync.gate import DirectionGate
from syncd.sync.inbound import InboundFlusher
from syncd.sync.inbound_batch import FlushCounts
from syncd.sync.outbound import OutboundPuller
from syncd.sync.pull_run import PullCounts
from syncd.vendors.protocols import ListMembershipResult

CONFIG = """
[hub]
kind = "activecampaign"
base_url = "http://hub.invalid/api/3"
api_token = "t"
webhook_token = "w"

[crm]
kind = "salesforce"
login_url = "http://crm.invalid"
auth_flow = "client_credentials"
client_id = "i"
client_secret = "s"

[sync]
conflict_winner = "{winner}"

[sync.objects.contact]
selection = "criteria"
criteria = {{ field = "Email", op = "is_not_null" }}
"""


class FakeVendor:
    """What both fakes share: records by object and id, a clock, call counts."""

    name = "fake"

    def __init__(self) -> None:
        self.records: dict[ObjectType, dict[str, dict[str, Any]]] = {o: {} for o in ObjectType}
        self.stamps: dict[str, datetime] = {}
        self.calls: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._clock = datetime(2026, 1, 1, tzinfo=UTC)

    def tick(self) -> datetime:
        self._clock += timedelta(seconds=1)
        return self._clock

    def put(self, obj: ObjectType, rid: str, fields: dict[str, Any]) -> None:
        self.records[obj].setdefault(rid, {}).update(fields)
        self.stamps[rid] = self.tick()

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def check_auth(self) -> None: ...

    async def deleted_since(
        self, obj: ObjectType, cursor: str | None
    ) -> tuple[list[DeletedRecord], str | None]:
        return [], cursor

    async def describe(self, obj: ObjectType) -> list[FieldInfo]:
        return []

    def quota(self) -> QuotaState | None:
        return None


class FakeCrm(FakeVendor):
    """Salesforce as the sync sees it."""

    async def changed_since(
        self,
        obj: ObjectType,
        cursor: str | None,
        *,
        fields: Sequence[str] = (),
        criteria: Rule | None = None,
    ) -> AsyncIterator[Page]:
        self.calls["query"] += 1
        since = datetime.fromisoformat(cursor) if cursor else None
        found = [
            (self.stamps[rid], rid, f)
            for rid, f in self.records[obj].items()
            if (since is None or self.stamps[rid] > since)
            and (criteria is None or _matches(criteria, {"Id": rid, **f}))
        ]
        found.sort(key=lambda t: t[0])
        recs = tuple(Record(obj, rid, dict(f), modified_at=at) for at, rid, f in found)
        newest = found[-1][0].isoformat() if found else cursor
        yield Page(recs, newest)

    async def get_by_ids(
        self, obj: ObjectType, ids: Sequence[str], *, fields: Sequence[str] = ()
    ) -> list[Record]:
        self.calls["get"] += 1
        return [Record(obj, i, dict(self.records[obj][i])) for i in ids if i in self.records[obj]]

    async def write(
        self,
        obj: ObjectType,
        op: WriteOp,
        items: Sequence[WriteItem],
        *,
        match_field: str | None = None,
    ) -> list[WriteResult]:
        self.calls["write"] += 1
        out = []
        for item in items:
            rid = item.id
            if rid is None and match_field:
                rid = next(
                    (
                        i
                        for i, f in self.records[obj].items()
                        if f.get(match_field) == item.fields.get(match_field)
                    ),
                    None,
                )
            created = rid is None
            merged = {**self.records[obj].get(rid or "", {}), **item.fields}
            if obj is ObjectType.CONTACT and not merged.get("LastName"):
                out.append(
                    WriteResult(
                        False,
                        error_category=ErrorCategory.VALIDATION,
                        error_code="REQUIRED_FIELD_MISSING",
                        error_message="Required fields are missing: [LastName]",
                    )
                )
                continue
            rid = rid or f"003{next(self._ids):015d}"
            self.put(obj, rid, dict(item.fields))
            out.append(WriteResult(True, id=rid, created=created))
        return out

    def edit(self, rid: str, **fields: Any) -> None:
        """A person edits the record in Salesforce."""
        self.put(ObjectType.CONTACT, rid, fields)


class FakeHub(FakeVendor):
    """A marketing hub as the sync sees it: contacts with tags, matched by email."""

    supports_last_broadcast = False
    keeps_primary_companies = False
    emails_per_lookup = 100

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, set[str]] = {}
        # Ids whose read makes the hub refuse (RequestRejected) or fail (TransientError)
        # the whole call, as a record the vendor cannot read does.
        self.poison: dict[str, Exception] = {}

    async def changed_since(
        self,
        obj: ObjectType,
        cursor: str | None,
        *,
        fields: Sequence[str] = (),
        criteria: Rule | None = None,
    ) -> AsyncIterator[Page]:
        yield Page((), cursor)

    async def get_by_ids(
        self, obj: ObjectType, ids: Sequence[str], *, fields: Sequence[str] = ()
    ) -> list[Record]:
        self.calls["get"] += 1
        for i in ids:
            if i in self.poison:
                raise self.poison[i]
        return [
            Record(obj, i, dict(self.records[obj][i]), tags=frozenset(self.tags.get(i, ())))
            for i in ids
            if i in self.records[obj]
        ]

    async def write(
        self,
        obj: ObjectType,
        op: WriteOp,
        items: Sequence[WriteItem],
        *,
        match_field: str | None = None,
        need_ids: bool = True,
    ) -> list[WriteResult]:
        self.calls["write"] += 1
        out = []
        for item in items:
            fields = dict(item.fields)
            tags = fields.pop("tags", [])
            rid = item.id or next(
                (i for i, f in self.records[obj].items() if f.get("email") == fields.get("email")),
                None,
            )
            created = rid is None
            rid = rid or str(next(self._ids))
            self.put(obj, rid, fields)
            self.tags.setdefault(rid, set()).update(tags)
            out.append(WriteResult(True, id=rid, created=created))
        return out

    async def find_by_emails(self, emails: Sequence[str]) -> dict[str, Record]:
        return {}

    async def add_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        self.tags.setdefault(contact_id, set()).update(tags)

    async def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        self.tags.setdefault(contact_id, set()).difference_update(tags)

    async def get_tags(self, contact_id: str) -> frozenset[str]:
        return frozenset(self.tags.get(contact_id, ()))

    async def subscribe(
        self, list_id: str, contact_ids: Sequence[str]
    ) -> list[ListMembershipResult]:
        return [ListMembershipResult(c, True, True) for c in contact_ids]

    async def remove_from_list(self, list_id: str, contact_ids: Sequence[str]) -> list[str]:
        return list(contact_ids)

    async def restore_to_list(self, list_id: str, contact_ids: Sequence[str]) -> None: ...
    async def send_last_broadcast(self, list_id: str, contact_ids: Sequence[str]) -> None: ...


def _matches(rule: Rule, fields: dict[str, Any]) -> bool:
    if isinstance(rule, Group):
        results = [_matches(r, fields) for r in rule.items]
        return all(results) if rule.mode == "all" else any(results)
    value = fields.get(rule.field)
    if rule.op is Op.IN:
        wanted = {str(v).lower() for v in rule.value or ()}  # type: ignore[union-attr]
        return str(value).lower() in wanted
    if rule.op is Op.IS_NOT_NULL:
        return value not in (None, "")
    raise AssertionError(f"the fake CRM does not evaluate {rule}")


class Engine:
    """The flusher and the puller over the fakes and the in-memory store."""

    def __init__(self, winner: str = "crm") -> None:
        self.settings = Settings(**tomllib.loads(CONFIG.format(winner=winner)))
        self.store = MemoryStore()
        self.crm = FakeCrm()
        self.hub = FakeHub()
        gates = [DirectionGate(d, self.store) for d in (Direction.INBOUND, Direction.OUTBOUND)]
        self.flusher = InboundFlusher(
            self.store, self.crm, self.hub, lambda: self.settings, gates[0], "t"
        )
        self.puller = OutboundPuller(
            self.store, self.crm, self.hub, lambda: self.settings, gates[1], "t"
        )

    @classmethod
    async def started(cls, winner: str = "crm") -> Engine:
        """An engine on an opened store."""
        e = cls(winner)
        await e.store.open()
        return e

    async def flush(self) -> FlushCounts:
        return await self.flusher.flush(RunTrigger.MANUAL)

    async def pull(self) -> PullCounts:
        return await self.puller.pull(ObjectType.CONTACT, RunTrigger.MANUAL)

    async def hub_edit(self, hub_id: str, **fields: Any) -> None:
        """A person edits a hub contact; its webhook is queued."""
        self.hub.put(ObjectType.CONTACT, hub_id, fields)
        self.hub.tags.setdefault(hub_id, {"added-to-salesforce-contact"})
        await self.store.enqueue(
            [
                Change(
                    Direction.INBOUND,
                    ObjectType.CONTACT,
                    hub_id,
                    "webhook",
                    {"email": self.hub.records[ObjectType.CONTACT][hub_id].get("email")},
                )
            ]
        )

    def crm_values(self, rid: str) -> dict[str, Any]:
        return dict(self.crm.records[ObjectType.CONTACT][rid])

    def hub_values(self, hid: str) -> dict[str, Any]:
        return dict(self.hub.records[ObjectType.CONTACT][hid])
