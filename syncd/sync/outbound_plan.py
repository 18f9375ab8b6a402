"""What a pull writes to the hub: each pulled record merged with the hub's current values
against its base, the hub writes of a batch, the outcome of each record, and conversions.

A linked record whose CRM values moved from their base is merged with the hub's current
values (read for the batch at once: one call per batch of the hub's largest size); the hub
receives what the merge resolved for it. A record new to the hub is created with its
non-empty values, matched there by email. A record whose CRM values equal its base costs
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from syncd import metrics
from syncd.errors import RequestRejected
from syncd.model import ErrorCategory, ObjectType, QueueEntry, WriteItem, WriteOp, WriteResult
from syncd.store.protocols import StateStore
from syncd.store.types import RecordLink, SyncedRecord
from syncd.sync.deletions import Deletions, deleted_reason
from syncd.sync.eligibility import tags_after_conversion
from syncd.sync.flight import HubWrite, Outcome, Outgoing, fields_of
from syncd.sync.gate import DirectionGate
from syncd.sync.mapping import ObjectMapping, stored_base
from syncd.sync.merge import Side, merge, same
from syncd.sync.pull_run import NEW_TAG, PullRun, is_conversion
from syncd.vendors.protocols import HubConnector

_NO_EMAIL = "no unique id: the record has no email (sync.only_with_email)"


class HubPlanner:
    """Plans, writes and records a pull's batches for the hub."""

    def __init__(
        self,
        store: StateStore,
        hub: HubConnector,
        gate: DirectionGate,
        deletions: Deletions,
    ) -> None:
        self._store = store
        self._hub = hub
        self._gate = gate
        self._deletions = deletions

    async def plan_claimed(self, run: PullRun, entries: list[QueueEntry]) -> list[HubWrite]:
        """Plan a claimed batch; entries that need no hub write are settled at once."""
        planned, settled = await self.plan(run, entries)
        await self.settle_claimed(run, settled)
        run.tally(settled)
        return planned

    async def plan(
        self,
        run: PullRun,
        group: Sequence[Outgoing],
        links: dict[str, RecordLink] | None = None,
    ) -> tuple[list[HubWrite], list[Outcome]]:
        """Decide each record's fate: the hub writes to make, and the outcomes of the records
        that need none (excluded, unchanged). `links`: the records' links, if already read."""
        obj, mapping, settings = run.obj, run.mapping, run.settings
        updates = HubWrite(obj, WriteOp.UPDATE)
        creates = HubWrite(obj, WriteOp.UPSERT)
        if links is None:
            links = await self._store.get_links(obj, [e.record_key for e in group])
        crm_fields = mapping.crm_fields  # a property that builds a list: once per batch
        new_tag = NEW_TAG.get(obj)
        winner = Side(settings.sync.conflict_winner)
        settled: list[Outcome] = []
        changed: list[tuple[Outgoing, RecordLink, dict[str, Any], dict[str, Any]]] = []
        for e in group:
            if isinstance(e, QueueEntry) and is_conversion(e):
                await self._convert(run, e)
                continue
            if new_tag is not None and settings.sync.only_with_email and not e.email:
                settled.append(Outcome(e, "excluded", message=_NO_EMAIL))
                continue
            payload = fields_of(e)
            crm = {f: payload.get(f) for f in crm_fields if f in payload}
            link = links.get(e.record_key)
            if link is not None and link.deleted_side is not None:
                settled.append(Outcome(e, "excluded", message=deleted_reason(link)))
                continue
            if link is None or not link.hub_id:
                m = merge({}, {}, crm, winner=winner, writes=(Side.HUB,))
                hub_fields = mapping.to_hub(m.to_hub)
                if new_tag is not None:
                    # hubs add (never replace) tags given on a write (to_hub made this dict)
                    hub_fields["tags"] = [new_tag]
                creates.add(e, link, hub_fields, {}, m.base, WriteItem(hub_fields))
                continue
            base = stored_base(link, mapping)
            if link.base_origin is None and all(same(v, base.get(f)) for f, v in crm.items()):
                settled.append(Outcome(e, "skipped"))  # nothing changed in the CRM since
                continue
            changed.append((e, link, crm, base))
        current = await self._hub_values(run, mapping, [lk.hub_id or "" for _, lk, _, _ in changed])
        gone = [lk.hub_id or "" for _, lk, _, _ in changed if (lk.hub_id or "") not in current]
        marked = {lk.hub_id: lk for lk in await self._deletions.seen(obj, "hub", gone)}
        for e, link, crm, base in changed:
            hub = current.get(link.hub_id or "")
            if hub is None:
                # Deleted in the hub since it was linked: recorded, not re-created.
                gone_link = marked.get(link.hub_id) or replace(link, deleted_side="hub")
                settled.append(Outcome(e, "excluded", message=deleted_reason(gone_link)))
                continue
            m = merge(base, hub or {}, crm, winner=winner, writes=(Side.HUB,))
            if hub is not None and not m.to_hub:
                new_link = replace(link, base=m.base, base_origin=None)
                settled.append(Outcome(e, "skipped", link=new_link, skipped=m.overridden))
                continue
            hub_fields = mapping.to_hub(m.to_hub)
            updates.add(
                e, link, hub_fields, m.overridden, m.base, WriteItem(hub_fields, id=link.hub_id)
            )
        return [w for w in (updates, creates) if w.rows], settled

    async def _hub_values(
        self, run: PullRun, mapping: ObjectMapping, hub_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        """The hub's current values of linked records, in CRM names; a record the hub no
        longer has is left out."""
        if not hub_ids:
            return {}
        fields = sorted(mapping.hub_to_crm)
        records = await self._hub.get_by_ids(run.hub_object, hub_ids, fields=fields)
        return {r.id: mapping.to_crm(r.fields) for r in records}

    async def write(self, run: PullRun, plan: HubWrite) -> list[WriteResult]:
        """One hub write of a planned batch; a result per item."""
        await run.lock.check()
        match = "email" if plan.object in NEW_TAG else None
        try:
            results = await self._hub.write(run.hub_object, plan.op, plan.items, match_field=match)
        except RequestRejected as exc:
            results = [
                WriteResult(
                    False,
                    error_category=ErrorCategory.REJECTED,
                    error_code=f"HTTP_{exc.status}",
                    error_message=str(exc),
                )
                for _ in plan.items
            ]
        await self._gate.recovered()
        return results

    async def settle_claimed(self, run: PullRun, outcomes: list[Outcome]) -> None:
        """Outcomes of claimed entries (each recorded under its claim's token): completions
        in one transaction per claim, failures one each."""
        done: dict[str, list[SyncedRecord]] = {}
        for o in outcomes:
            assert isinstance(o.rec, QueueEntry)
            if o.kind == "excluded":
                await self._store.exclude(
                    o.rec.id, owner=o.rec.claimed_by, reason=o.message or "", run_id=run.run_id
                )
            elif o.kind == "error":
                await self._store.fail(
                    o.rec.id,
                    owner=o.rec.claimed_by,
                    category=o.category or ErrorCategory.REJECTED,
                    code=o.code or "ERROR",
                    message=o.message or "rejected by the hub",
                    run_id=run.run_id,
                )
            else:
                done.setdefault(o.rec.claimed_by, []).append(
                    SyncedRecord(o.rec.id, o.link, o.transferred, o.skipped)
                )
        for owner, records in done.items():
            await self._store.link_and_complete(records, owner=owner, run_id=run.run_id)

    async def _convert(self, run: PullRun, e: QueueEntry) -> None:
        """A converted lead: its hub contact becomes the converted contact's, tags swapped."""
        contact_id = e.payload.get("ConvertedContactId")
        lead_link = await self._store.get_link(ObjectType.LEAD, crm_id=e.record_key)
        hub_id = lead_link.hub_id if lead_link else None
        if hub_id is None and contact_id:
            contact_link = await self._store.get_link(ObjectType.CONTACT, crm_id=str(contact_id))
            hub_id = contact_link.hub_id if contact_link else None
        if hub_id is None or not contact_id:
            # Only leads syncd linked have a hub contact to convert; no call for the rest.
            await self._store.exclude(
                e.id,
                owner=e.claimed_by,
                run_id=run.run_id,
                reason="filtered: converted lead was never synced to the hub",
            )
            run.counts.excluded += 1
            return
        tags = await self._hub.get_tags(hub_id)
        add, remove = tags_after_conversion(tags)
        await run.lock.check()
        if add:
            await self._hub.add_tags(hub_id, sorted(add))
        if remove:
            await self._hub.remove_tags(hub_id, sorted(remove))
        new_tags = frozenset((tags | add) - remove)
        now = datetime.now(UTC)
        await self._store.upsert_link(
            RecordLink(
                object=ObjectType.CONTACT,
                hub_id=hub_id,
                crm_id=str(contact_id),
                email=e.email,
                name=e.name,
                sync_tags=new_tags,
                last_synced_at=now,
                # What the lead's sides agreed on, the contact's sides agree on: Salesforce
                # carries a lead's values over to the contact it converts it into.
                base=lead_link.base if lead_link and lead_link.base_origin is None else None,
            )
        )
        if lead_link is not None:
            await self._store.upsert_link(
                RecordLink(
                    object=ObjectType.LEAD,
                    hub_id=None,
                    crm_id=e.record_key,
                    email=e.email,
                    name=e.name,
                    status="converted",
                    sync_tags=new_tags,
                    last_synced_at=now,
                )
            )
        transferred = {
            "object": "contact",
            "converted_contact_id": contact_id,
            "tags_added": sorted(add),
            "tags_removed": sorted(remove),
        }
        await self._store.complete(
            e.id, owner=e.claimed_by, transferred=transferred, run_id=run.run_id
        )
        run.counts.converted += 1
        metrics.RECORDS.labels("outbound", "lead", "processed").inc()
