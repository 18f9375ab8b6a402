"""One claimed batch of inbound entries (≤ 200), from the hub's current values to the CRM.

A webhook is only a hint that a contact changed: its payload may be stale by the time the
buffer is flushed (a pull may have written the contact since), and ActiveCampaign sends
custom field values as an unordered list (https://blog.minimacode.com/using-active-campaign-
webhooks; https://developers.activecampaign.com/page/webhooks). So the batch reads each
contact's current values from the hub (one call per 100 contacts), reads the CRM's current
values of the same records (linked ones by id, the others by email: one query per 200), and
merges the two against each record's base. The CRM receives the fields the merge resolved
for it; a CRM edit the hub lacks waits for the next pull, which carries it over. Outcomes
are recorded together: links (with their new base) and completed entries in one store
transaction, failures and exclusions one by one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd import metrics
from syncd.config import Settings
from syncd.emails import is_valid_email, normalize_email
from syncd.errors import RecordError, RequestRejected
from syncd.logging import get_logger
from syncd.model import (
    ErrorCategory,
    ObjectType,
    QueueEntry,
    Record,
    WriteItem,
    WriteOp,
    WriteResult,
    parse_tags,
)
from syncd.rules import Condition, Group, Op, Rule
from syncd.store.leases import Leases
from syncd.store.protocols import StateStore
from syncd.store.types import RecordLink, SyncedRecord
from syncd.sync.counts import RunCounts
from syncd.sync.deletions import Deletions, deleted_reason
from syncd.sync.eligibility import Excluded, Target, inbound_target
from syncd.sync.gate import DirectionGate
from syncd.sync.mapping import ObjectMapping, stored_base
from syncd.sync.merge import Merged, Side, merge, same
from syncd.vendors.protocols import CrmConnector, HubConnector

CRM_BATCH = 200
log = get_logger("syncd.inbound")

_RECORD_RETRY = {ErrorCategory.TRANSIENT}


@dataclass
class FlushCounts(RunCounts):
    """What one flush did."""

    claimed: int = 0
    processed: int = 0
    skipped: int = 0
    errors: int = 0
    excluded: int = 0
    retried: int = 0
    crm_calls: int = 0


@dataclass
class _Planned:
    """One entry on its way: its target, mapping, the hub's values and, once read and
    merged, the CRM record it pairs with and what to write."""

    entry: QueueEntry
    target: ObjectType
    mapping: ObjectMapping
    hub_fields: dict[str, Any]
    link: RecordLink | None
    crm_id: str | None = None
    crm_values: dict[str, Any] | None = None  # None: no CRM record (yet)
    merged: Merged = field(default_factory=Merged)

    @property
    def email(self) -> str | None:
        return normalize_email(self.hub_fields.get("email"))

    @property
    def match(self) -> str | None:
        """What an unlinked record is matched on in the CRM: a person's email, a company's
        name (case-insensitive, as SOQL compares text)."""
        if self.target is not ObjectType.ACCOUNT:
            return self.email
        name = self.mapping.to_crm(self.hub_fields).get("Name")
        return str(name).strip().lower() if name else None


@dataclass
class InboundBatch:
    """Sends one claimed batch; what it needs is given at construction, per flush."""

    store: StateStore
    crm: CrmConnector
    hub: HubConnector | None
    settings: Settings
    gate: DirectionGate
    leases: Leases
    run_id: int
    counts: FlushCounts
    deletions: Deletions
    done: list[SyncedRecord] = field(default_factory=list)

    @property
    def owner(self) -> str:
        """The claim's owner token: every store outcome of the batch is made under it."""
        return self.leases.owner

    async def send(self, entries: list[QueueEntry]) -> None:
        """Read, merge, write and record every entry of the batch."""
        current = await self._current(entries)
        gone = await self._gone([e for e in entries if e.id not in current])
        planned: list[_Planned] = []
        for entry in entries:
            fields = current.get(entry.id)
            if fields is None:
                link = gone.get(entry.record_key)
                await self._exclude(
                    entry,
                    deleted_reason(link)
                    if link is not None
                    else "deleted in the hub before it could be sent",
                )
                continue
            try:
                plan = await self._plan(entry, fields)
            except RecordError as exc:
                await self.fail(entry, exc)
                continue
            if isinstance(plan, Excluded):
                await self._exclude(entry, plan.reason)
            else:
                planned.append(plan)
        for obj in (ObjectType.CONTACT, ObjectType.LEAD, ObjectType.ACCOUNT):
            group = [p for p in planned if p.target is obj]
            if group:
                await self._sync(obj, group)
        if self.done:
            await self.store.link_and_complete(self.done, owner=self.owner, run_id=self.run_id)
            self.done = []

    async def _gone(self, entries: list[QueueEntry]) -> dict[str, RecordLink]:
        """Entries whose contact the hub no longer has: the links of those syncd had linked,
        now marked deleted in the hub (a contact never linked was never synced: nothing
        to record)."""
        out: dict[str, RecordLink] = {}
        for obj in (ObjectType.CONTACT, ObjectType.LEAD, ObjectType.ACCOUNT):
            people = obj is not ObjectType.ACCOUNT
            keys = [
                e.record_key
                for e in entries
                if e.record_key not in out and (e.object is not ObjectType.ACCOUNT) == people
            ]
            for link in await self.deletions.seen(obj, "hub", keys):
                if link.hub_id:
                    out[link.hub_id] = link
            for key in keys:
                old = await self.store.get_link(obj, hub_id=key)
                if old is not None and old.deleted_side is not None and key not in out:
                    out[key] = old
        return out

    # -- reading both sides ------------------------------------------------------------------
    def _hub_fields(self, obj: ObjectType) -> set[str]:
        s = self.settings.sync.objects.get(obj)
        return {"email", "tags", *(s.mapping if s is not None else ())}

    async def _current(self, entries: list[QueueEntry]) -> dict[int, dict[str, Any]]:
        """Each entry's contact as the hub holds it now (values and sync tags); entries of
        contacts the hub no longer has are left out. Without a hub connector (a CRM-only
        test setup), the payloads are all there is.

        Read with the contact mapping's fields; the contacts that turn out to be leads are
        read again only if the lead mapping needs more (on ActiveCampaign a custom field
        costs one call per contact, so it is read only for the records that map it)."""
        if self.hub is None:
            return {e.id: dict(e.payload) for e in entries}
        companies = [e for e in entries if e.object is ObjectType.ACCOUNT]
        entries = [e for e in entries if e.object is not ObjectType.ACCOUNT]
        out = await self._read_hub(
            companies, self._hub_fields(ObjectType.ACCOUNT), ObjectType.ACCOUNT
        )
        first = self._hub_fields(ObjectType.CONTACT)
        out.update(await self._read_hub(entries, first))
        lead_fields = self._hub_fields(ObjectType.LEAD)
        if lead_fields - first:
            leads = [
                e
                for e in entries
                if e.id in out
                and inbound_target(parse_tags(out[e.id].get("tags"))) == Target(ObjectType.LEAD)
            ]
            if leads:
                out.update(await self._read_hub(leads, lead_fields))
        return out

    async def _read_hub(
        self, entries: list[QueueEntry], fields: set[str], obj: ObjectType = ObjectType.CONTACT
    ) -> dict[int, dict[str, Any]]:
        assert self.hub is not None
        if not entries:
            return {}
        records = await self.hub.get_by_ids(
            obj, [e.record_key for e in entries], fields=sorted(fields)
        )
        by_id = {r.id: r for r in records}
        out: dict[int, dict[str, Any]] = {}
        for e in entries:
            rec = by_id.get(e.record_key)
            if rec is not None:
                out[e.id] = {**dict(rec.fields), "tags": sorted(rec.tags)}
        return out

    async def _plan(self, entry: QueueEntry, fields: dict[str, Any]) -> _Planned | Excluded:
        settings = self.settings
        if entry.object is ObjectType.ACCOUNT:
            return await self._plan_company(entry, fields)
        target = inbound_target(parse_tags(fields.get("tags")))
        if isinstance(target, Excluded):
            return target
        obj_settings = settings.sync.objects.get(target.object)
        if obj_settings is None or not obj_settings.enabled:
            return Excluded(f"filtered: syncing {target.object.value}s is disabled")
        if obj_settings.direction == "crm-to-hub":
            return Excluded(f"filtered: {target.object.value} direction is crm-to-hub")
        email = fields.get("email")
        if settings.sync.only_with_email and not normalize_email(email):
            return Excluded("no unique id: the contact has no email (sync.only_with_email)")
        if email and not is_valid_email(email):
            raise RecordError(ErrorCategory.VALIDATION, "INVALID_EMAIL", f"invalid email {email!r}")
        mapping = ObjectMapping.from_settings(target.object, obj_settings)
        link = await self.store.get_link(target.object, hub_id=entry.record_key)
        if link is not None and link.deleted_side is not None:
            return Excluded(deleted_reason(link))
        mapping.validate_hub(fields, creating=link is None or link.crm_id is None)
        return _Planned(entry, target.object, mapping, fields, link)

    async def _plan_company(self, entry: QueueEntry, fields: dict[str, Any]) -> _Planned | Excluded:
        obj = ObjectType.ACCOUNT
        obj_settings = self.settings.sync.objects.get(obj)
        if obj_settings is None or not obj_settings.enabled:
            return Excluded("filtered: syncing accounts is disabled")
        if obj_settings.direction == "crm-to-hub":
            return Excluded("filtered: account direction is crm-to-hub")
        mapping = ObjectMapping.from_settings(obj, obj_settings)
        link = await self.store.get_link(obj, hub_id=entry.record_key)
        if link is not None and link.deleted_side is not None:
            return Excluded(deleted_reason(link))
        mapping.validate_hub(fields, creating=link is None or link.crm_id is None)
        return _Planned(entry, obj, mapping, fields, link)

    async def _read_crm(self, obj: ObjectType, group: list[_Planned]) -> None:
        """The CRM's current values of the group's records: linked ones by id, the others
        matched by email (a company: by name); one query per 200 records."""
        key_field = "Name" if obj is ObjectType.ACCOUNT else "Email"
        fields = sorted({key_field, *group[0].mapping.crm_fields})
        wanted: list[tuple[str, str]] = []  # ("Id" | key_field, value)
        for p in group:
            if p.link is not None and p.link.crm_id:
                wanted.append(("Id", p.link.crm_id))
            elif p.match:
                wanted.append((key_field, p.match))
        by_id: dict[str, Record] = {}
        by_key: dict[str, Record] = {}
        for at in range(0, len(wanted), CRM_BATCH):
            part = wanted[at : at + CRM_BATCH]
            async for page in self.crm.changed_since(
                obj, None, fields=fields, criteria=_id_or(key_field, part)
            ):
                for found in page.records:
                    by_id[found.id] = found
                    value = found.fields.get(key_field)
                    if isinstance(value, str) and value.strip():
                        by_key.setdefault(value.strip().lower(), found)
        for p in group:
            rec: Record | None
            if p.link is not None and p.link.crm_id:
                rec = by_id.get(p.link.crm_id)
                p.crm_id = p.link.crm_id
            else:
                rec = by_key.get(p.match or "")
                p.crm_id = rec.id if rec is not None else None
            if rec is not None:
                p.crm_values = {f: rec.fields.get(f) for f in p.mapping.crm_fields}

    # -- merging and writing -----------------------------------------------------------------
    async def _sync(self, obj: ObjectType, group: list[_Planned]) -> None:
        hub_values = {id(p): p.mapping.to_crm(p.hub_fields) for p in group}
        unchanged = [p for p in group if _holds_base(p, hub_values[id(p)])]
        for p in unchanged:
            # The hub holds what both sides last agreed on: nothing for the CRM, no call.
            p.merged = Merged(base=stored_base(p.link, p.mapping))
            self._processed(p, {}, p.link.crm_id if p.link else None)
            self.counts.skipped += 1
            metrics.RECORDS.labels("inbound", obj.value, "skipped").inc()
        group = [p for p in group if p not in unchanged]
        if not group:
            return
        await self._read_crm(obj, group)
        winner = Side(self.settings.sync.conflict_winner)
        updates: list[_Planned] = []
        creates: list[_Planned] = []
        for p in group:
            p.merged = merge(
                stored_base(p.link, p.mapping),
                hub_values[id(p)],
                p.crm_values or {},
                winner=winner,
                writes=(Side.CRM,),
            )
            if p.crm_id is None:
                creates.append(p)
            elif p.merged.to_crm:
                updates.append(p)
            else:
                # The CRM already holds what the hub has: no call, only the new base.
                self._processed(p, {}, p.crm_id)
                self.counts.skipped += 1
                metrics.RECORDS.labels("inbound", obj.value, "skipped").inc()
        crm_settings = self.settings.crm
        ext = crm_settings.external_id_fields.get(obj) if crm_settings else None
        for op, batch in ((WriteOp.UPDATE, updates), (WriteOp.UPSERT, creates)):
            if batch:
                await self._write(
                    obj, op if op is WriteOp.UPDATE or ext else WriteOp.CREATE, batch, ext
                )

    async def _write(
        self, obj: ObjectType, op: WriteOp, batch: list[_Planned], ext: str | None
    ) -> None:
        batch = await self._still_held(batch)
        if not batch:
            return
        items = []
        for p in batch:
            fields = dict(p.merged.to_crm)
            if ext:
                fields[ext] = p.entry.record_key
            items.append(WriteItem(fields, id=p.crm_id if op is WriteOp.UPDATE else None))
        try:
            results = await self.crm.write(
                obj, op, items, match_field=ext if op is WriteOp.UPSERT else None
            )
        except RequestRejected as exc:
            # The whole call was refused: every record of it fails with the vendor's word.
            err = RecordError(ErrorCategory.REJECTED, f"HTTP_{exc.status}", str(exc))
            for p in batch:
                await self.fail(p.entry, err)
            return
        self.counts.crm_calls += -(-len(items) // CRM_BATCH)
        await self.gate.recovered()
        for p, item, res in zip(batch, items, results, strict=True):
            await self._record(p, item, res)

    async def _still_held(self, batch: list[_Planned]) -> list[_Planned]:
        """The fencing check: entries whose lease this claim lost (it stalled past the lease,
        another instance reclaimed them) are left to their new claimer, unwritten."""
        held = await self.leases.still_held([p.entry.id for p in batch])
        lost = [p.entry.id for p in batch if p.entry.id not in held]
        if lost:
            log.warning("lease_lost", direction="inbound", owner=self.owner, entries=lost)
            metrics.LEASES_LOST.labels("inbound").inc(len(lost))
        return [p for p in batch if p.entry.id in held]

    async def _record(self, p: _Planned, item: WriteItem, res: WriteResult) -> None:
        if res.ok:
            self._processed(p, dict(item.fields), res.id or p.crm_id)
            self.counts.processed += 1
            metrics.RECORDS.labels("inbound", p.target.value, "processed").inc()
            return
        category = res.error_category or ErrorCategory.REJECTED
        await self.fail(
            p.entry, RecordError(category, res.error_code or "ERROR", res.error_message or "")
        )

    def _processed(self, p: _Planned, sent: dict[str, Any], crm_id: str | None) -> None:
        e = p.entry
        link = RecordLink(
            object=p.target,
            hub_id=e.record_key,
            crm_id=crm_id,
            email=p.email,
            name=e.name or (p.match if p.target is ObjectType.ACCOUNT else None),
            sync_tags=parse_tags(p.hub_fields.get("tags")),
            last_synced_at=datetime.now(UTC),
            base=p.merged.base,
        )
        transferred = {"object": p.target.value, "fields": sent} if sent else {}
        self.done.append(SyncedRecord(e.id, link, transferred, p.merged.overridden))

    # -- failures ----------------------------------------------------------------------------
    async def _exclude(self, entry: QueueEntry, reason: str) -> None:
        await self.store.exclude(entry.id, owner=self.owner, reason=reason, run_id=self.run_id)
        self.counts.excluded += 1
        metrics.RECORDS.labels("inbound", entry.object.value, "excluded").inc()

    async def fail(self, e: QueueEntry, err: RecordError) -> None:
        """Record a failed attempt: back to pending later if transient, else an error."""
        inbound = self.settings.inbound
        retry_at = None
        if err.category in _RECORD_RETRY and e.attempts + 1 < inbound.max_attempts:
            delay = min(inbound.retry_base_delay * 2**e.attempts, 3600.0)
            retry_at = datetime.now(UTC) + timedelta(seconds=random.uniform(delay / 2, delay))
        await self.store.fail(
            e.id,
            owner=self.owner,
            category=err.category,
            code=err.code,
            message=err.message,
            retry_at=retry_at,
            run_id=self.run_id,
        )
        if retry_at is not None:
            self.counts.retried += 1
        else:
            self.counts.errors += 1
            metrics.RECORDS.labels("inbound", e.object.value, "error").inc()


def _holds_base(p: _Planned, hub_values: dict[str, Any]) -> bool:
    """The hub's values are all the base: the hub changed nothing the CRM needs."""
    link = p.link
    if link is None or not link.crm_id or link.base is None or link.base_origin is not None:
        return False
    return all(same(v, link.base.get(f)) for f, v in hub_values.items())


def _id_or(key_field: str, part: Sequence[tuple[str, str]]) -> Rule:
    """``Id IN (…) OR Email IN (…)`` (or Name, for companies) for a chunk of records."""
    items: list[Rule] = []
    for name in ("Id", key_field):
        values = tuple(dict.fromkeys(v for k, v in part if k == name))
        if values:
            items.append(Condition(name, Op.IN, values))
    return items[0] if len(items) == 1 else Group("any", tuple(items))
