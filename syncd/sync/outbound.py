"""Outbound: scheduled pulls of CRM changes since a cursor, written to the hub in batches.

A pull sends what it reads straight to the hub and records each record's outcome once
(its link and its entry, already processed, error or excluded); a record that already has
an outbound entry pending or in flight (or a converted lead) goes through the queue instead,
merging with that entry. The cursor advances only when every write of the pull went
through, so a pull that dies re-reads what it had not recorded; one that fails queues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd import metrics
from syncd.config import ObjectSyncSettings, Settings
from syncd.emails import normalize_email
from syncd.errors import IntegrationError, RequestRejected, StoreError, TransientError
from syncd.logging import get_logger
from syncd.model import (
    Change,
    Direction,
    ErrorCategory,
    ObjectType,
    Page,
    QueueEntry,
    RunKind,
    RunTrigger,
    SyncTag,
    WriteItem,
    WriteOp,
    WriteResult,
    builder,
)
from syncd.rules import Condition, Op, Rule
from syncd.store.leases import keep_job_lock, keep_leases, log_claimed
from syncd.store.protocols import StateStore
from syncd.store.types import RecordLink, SyncedRecord
from syncd.sync.counts import RunCounts
from syncd.sync.eligibility import tags_after_conversion
from syncd.sync.flight import (
    HubWrite,
    InFlight,
    Outcome,
    Outgoing,
    Unsettled,
    fields_of,
    merged,
    outcomes_of,
    read_ahead,
)
from syncd.sync.gate import DirectionGate
from syncd.sync.mapping import ObjectMapping, stored_base
from syncd.sync.merge import Side, merge, same
from syncd.vendors.protocols import CrmConnector, HubConnector

log = get_logger("syncd.outbound")
HUB_BATCH = 500  # two AC bulk imports or five HubSpot batch calls: fewer store round trips
LEAD_CONVERSION_FIELDS = (
    "IsConverted",
    "ConvertedDate",
    "ConvertedContactId",
    "ConvertedAccountId",
)
_change = builder(Change)  # one per record pulled: without per-field setattr
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


def _is_conversion(e: QueueEntry) -> bool:
    return e.object is ObjectType.LEAD and bool(e.payload.get("IsConverted"))


class PullBusy(Exception):
    """Another instance (or task) is running this pull right now."""


def cursor_name(obj: ObjectType) -> str:
    """The store cursor of an object's pulls."""
    return f"outbound:{obj.value}"


class OutboundPuller:
    """Runs pulls per object; one at a time per object across instances (job lock)."""

    def __init__(
        self,
        store: StateStore,
        crm: CrmConnector,
        hub: HubConnector,
        settings: Callable[[], Settings],
        gate: DirectionGate,
        owner: str,
    ) -> None:
        self._store = store
        self._crm = crm
        self._hub = hub
        self._settings = settings
        self.gate = gate
        self._owner = owner
        self._locks: dict[ObjectType, asyncio.Lock] = {}

    async def pull(self, obj: ObjectType, trigger: RunTrigger) -> PullCounts:
        """Pull one object now; raises PullBusy if a pull of it is already running."""
        lock = self._locks.setdefault(obj, asyncio.Lock())
        if lock.locked():
            raise PullBusy(f"a pull of {obj.value} is already running here")
        async with lock:
            settings = self._settings()
            ttl = max(settings.daemon.lease_seconds, 60.0)
            name = f"pull:{obj.value}"
            if not await self._store.try_job_lock(name, self._owner, ttl):
                raise PullBusy(f"a pull of {obj.value} is running on another instance")
            try:
                # Records sent directly are safe from other instances only while we hold
                # the lock: keep it however long the pull takes.
                async with keep_job_lock(self._store, name, self._owner, ttl):
                    return await self._pull_locked(obj, trigger, settings)
            finally:
                await self._store.release_job_lock(name, self._owner)

    async def _pull_locked(
        self, obj: ObjectType, trigger: RunTrigger, settings: Settings
    ) -> PullCounts:
        counts = PullCounts()
        s = settings.sync.objects.get(obj)
        if s is None or not s.enabled or s.direction == "hub-to-crm" or s.selection == "none":
            return counts
        if self.gate.blocked:
            return counts
        started = time.perf_counter()
        run_id = await self._store.start_run(
            RunKind.PULL, trigger, name=obj.value, owner=self._owner
        )
        status, error = "succeeded", None
        try:
            await self._pull_pages(obj, s, settings, run_id, counts)
            await self.gate.recovered()
        except IntegrationError as exc:
            status, error = "failed", str(exc)
            if not isinstance(exc, TransientError):
                await self.gate.report(exc)
            log.warning("pull_failed", object=obj.value, error=str(exc))
        finally:
            await self._store.finish_run(
                run_id, counts=counts.as_dict(), status=status, error=error
            )
        metrics.PULL_DURATION.labels(obj.value).observe(time.perf_counter() - started)
        if status == "succeeded":
            metrics.LAST_SUCCESS.labels(f"pull_{obj.value}").set_to_current_time()
        log.info("pulled", object=obj.value, trigger=trigger.value, run=run_id, **counts.as_dict())
        return counts

    async def _criteria(self, obj: ObjectType, s: ObjectSyncSettings) -> Rule | None:
        if s.selection == "flagged" and s.flag_field:
            return Condition(s.flag_field, Op.EQ, True)
        if s.selection == "criteria":
            return s.criteria
        # all_new: records created from the moment the sync was enabled.
        key = f"{cursor_name(obj)}:enabled_at"
        enabled_at = await self._store.get_cursor(key)
        if enabled_at is None:
            enabled_at = datetime.now(UTC).isoformat()
            await self._store.set_cursor(key, enabled_at)
        return Condition("CreatedDate", Op.GE, enabled_at)

    async def _pull_pages(
        self,
        obj: ObjectType,
        s: ObjectSyncSettings,
        settings: Settings,
        run_id: int,
        counts: PullCounts,
    ) -> None:
        mapping = ObjectMapping.from_settings(obj, s)
        cursor = await self._store.get_cursor(cursor_name(obj))
        since = _minus(cursor, settings.outbound.overlap_seconds)
        criteria = await self._criteria(obj, s)
        fields = [*mapping.crm_fields, "Email"] if obj in NEW_TAG else list(mapping.crm_fields)
        if obj is ObjectType.LEAD:
            # The connector also reads leads converted since the cursor, whatever the criteria.
            fields += LEAD_CONVERSION_FIELDS
        pages = self._crm.changed_since(obj, since, fields=sorted(set(fields)), criteria=criteria)
        flight = InFlight()
        unsettled = Unsettled()
        try:
            newest = await self._pull_into_hub(
                obj, mapping, settings, run_id, counts, pages, flight, unsettled
            )
            await self._drain(obj, settings, run_id, counts, flight, final=True)
        except BaseException:
            await flight.abandon()
            # What this pull read but did not settle waits as pending entries, as if queued
            # on arrival: the next pull merges with them, and an inbound flush meanwhile sees
            # them as a conflict instead of overwriting the CRM's change.
            await asyncio.shield(self._requeue(unsettled))
            raise
        finally:
            await flight.abandon()  # only on an error: the final drain waited for every batch
        if newest and (cursor is None or newest > cursor):
            await self._store.set_cursor(cursor_name(obj), newest)

    async def _pull_into_hub(
        self,
        obj: ObjectType,
        mapping: ObjectMapping,
        settings: Settings,
        run_id: int,
        counts: PullCounts,
        pages: AsyncIterator[Page],
        flight: InFlight,
        unsettled: Unsettled,
    ) -> str | None:
        """Send each page to the hub, directly or through the queue; the newest cursor the
        pages gave."""
        newest: str | None = None
        async with contextlib.aclosing(read_ahead(pages)) as ahead:
            async for page in ahead:
                counts.read += len(page.records)
                changes = [
                    _change(
                        direction=Direction.OUTBOUND,
                        object=obj,
                        record_key=r.id,
                        source="pull",
                        fields=r.fields,  # the page's own dict: nothing else holds it
                        email=normalize_email(r.email),
                        name=_name_of(r.fields),
                        event="converted" if r.fields.get("IsConverted") else "update",
                    )
                    for r in page.records
                ]
                queued, direct = await self._split(obj, changes)
                if queued:
                    await self._store.enqueue(queued)
                await self._drain(obj, settings, run_id, counts, flight)
                links = await self._page_links(obj, direct, flight)
                parts = [direct[at : at + HUB_BATCH] for at in range(0, len(direct), HUB_BATCH)]
                tokens = [unsettled.add(part) for part in parts]
                for part, token in zip(parts, tokens, strict=True):
                    await self._send_direct(
                        obj,
                        part,
                        token,
                        mapping,
                        settings,
                        run_id,
                        counts,
                        flight,
                        unsettled,
                        links,
                    )
                if page.cursor and (newest is None or page.cursor > newest):
                    newest = page.cursor
        return newest

    async def _split(
        self, obj: ObjectType, changes: list[Change]
    ) -> tuple[list[Change], list[Change]]:
        """The changes to queue and those to send directly (one per record, merged).

        A record with an outbound entry pending or in flight (an earlier failed pull, an
        operator's retry) keeps going through the queue, where it merges with that entry and
        waits its turn; so does a converted lead. Only the pull (under its job lock) sends
        the rest, so nothing else can queue or send them meanwhile.
        """
        to_queue = await self._store.queued_keys(
            Direction.OUTBOUND, obj, [c.record_key for c in changes]
        )
        to_queue.update(c.record_key for c in changes if c.event == "converted")
        queued: list[Change] = []
        direct: dict[str, Change] = {}
        for c in changes:
            if c.record_key in to_queue:
                queued.append(c)
                continue
            seen = direct.get(c.record_key)
            # A record twice in a page: later values win, as the queue would merge them.
            direct[c.record_key] = c if seen is None else merged(seen, c)
        return queued, list(direct.values())

    async def _page_links(
        self, obj: ObjectType, direct: list[Change], flight: InFlight
    ) -> dict[str, RecordLink] | None:
        """The links of a page's direct changes, read once for all its batches; None when a
        batch still on its way carries one of them (each batch then reads its own after it).

        Read before the batches in flight record their outcomes, so the next batch is planned
        without waiting behind them in the store: only this pull writes these links meanwhile.
        """
        keys = [c.record_key for c in direct]
        if not keys or flight.holds(keys):
            return None
        return await self._store.get_links(obj, keys)

    async def _send_direct(
        self,
        obj: ObjectType,
        changes: list[Change],
        token: int,
        mapping: ObjectMapping,
        settings: Settings,
        run_id: int,
        counts: PullCounts,
        flight: InFlight,
        unsettled: Unsettled,
        links: dict[str, RecordLink] | None = None,
    ) -> None:
        """Plan a batch of pulled changes and send it; its outcome is recorded once.

        `links` are the page's links, read before any batch in flight could change them."""
        keys = [c.record_key for c in changes]
        if links is None and flight.holds(keys):
            # An earlier batch of this pull carries one of these records: plan on its links.
            await flight.wait()
        plans, settled = await self._plan_object(
            obj, changes, mapping, settings, run_id, counts, links
        )
        await flight.hub_free()
        flight.start(
            functools.partial(
                self._send_settled, obj, plans, settled, run_id, counts, unsettled.done(token)
            ),
            keys,
        )
        # Let the batch send its first hub call before the next one is planned.
        await asyncio.sleep(0)

    async def _send_settled(
        self,
        obj: ObjectType,
        plans: list[HubWrite],
        settled: list[Outcome],
        run_id: int,
        counts: PullCounts,
        recorded: Callable[[], None],
        previous: asyncio.Task[None] | None,
        written: asyncio.Event,
    ) -> None:
        """Write a batch of direct changes to the hub, then (after the previous batch) record
        every outcome, links and entries, in one store transaction."""
        results = [await self._write_hub(plan) for plan in plans]
        written.set()
        if previous is not None:
            await previous
        outcomes = list(settled)
        for plan, res in zip(plans, results, strict=True):
            outcomes += outcomes_of(plan, res)
        await self._store.record_settled([o.settled() for o in outcomes], run_id=run_id)
        recorded()
        _tally(obj, outcomes, counts)

    async def _drain(
        self,
        obj: ObjectType,
        settings: Settings,
        run_id: int,
        counts: PullCounts,
        flight: InFlight,
        *,
        final: bool = False,
    ) -> None:
        """Claim, plan and send queued batches until none is claimable.

        While one batch is written to the hub, the next is claimed and planned (store work
        and mapping overlap the hub's answer); hub writes themselves stay one at a time, in
        claim order. Unless `final`, the last batch may still be in flight on return.
        """
        lease = settings.daemon.lease_seconds
        while True:
            entries = await self._store.claim_pending(
                Direction.OUTBOUND, limit=HUB_BATCH, owner=self._owner, lease_seconds=lease, obj=obj
            )
            if not entries:
                if final and flight.busy:
                    # A record of the in-flight batch may have a newer entry waiting on it.
                    await flight.wait()
                    continue
                return
            log_claimed(Direction.OUTBOUND, self._owner, entries)
            keys = [e.record_key for e in entries]
            try:
                if flight.busy and (any(_is_conversion(e) for e in entries) or flight.holds(keys)):
                    # A conversion reads the converted contact's link, and a record sent
                    # directly may be on its way: let the batches before land first.
                    await flight.wait()
                plans = await self._plan_batch(entries, settings, run_id, counts)
                await flight.hub_free()
            except (IntegrationError, asyncio.CancelledError):
                await asyncio.shield(self._release(entries))
                raise
            flight.start(
                functools.partial(self._send_batch, entries, plans, run_id, counts, lease), keys
            )

    async def _requeue(self, unsettled: Unsettled) -> None:
        """Queue the changes of direct batches whose outcome was not recorded."""
        changes = unsettled.left()
        if not changes:
            return
        try:
            await self._store.enqueue(changes)
        except StoreError as exc:
            # Nothing is lost: the cursor did not move, so the next pull reads them again.
            log.warning("requeue_failed", records=len(changes), error=str(exc))

    async def _release(self, entries: list[QueueEntry]) -> None:
        """Unfinished claims go back at once rather than waiting for their lease."""
        await self._store.release([e.id for e in entries], owner=self._owner)

    async def _send_batch(
        self,
        entries: list[QueueEntry],
        plans: list[HubWrite],
        run_id: int,
        counts: PullCounts,
        lease: float,
        previous: asyncio.Task[None] | None,
        written: asyncio.Event,
    ) -> None:
        """Write a planned batch to the hub, then record its outcome after the previous
        batch recorded its own (so the store sees outcomes in claim order)."""
        try:
            async with keep_leases(self._store, entries, self._owner, lease):
                results = [await self._write_hub(plan) for plan in plans]
            written.set()
            if previous is not None:
                await previous
            for plan, res in zip(plans, results, strict=True):
                outcomes = outcomes_of(plan, res)
                await self._settle_claimed(outcomes, run_id)
                _tally(plan.object, outcomes, counts)
        except (IntegrationError, asyncio.CancelledError):
            await asyncio.shield(self._release(entries))
            raise

    async def _settle_claimed(self, outcomes: list[Outcome], run_id: int) -> None:
        """Outcomes of claimed entries: completions in one transaction, failures one each."""
        done: list[SyncedRecord] = []
        for o in outcomes:
            assert isinstance(o.rec, QueueEntry)
            if o.kind == "excluded":
                await self._store.exclude(
                    o.rec.id, owner=self._owner, reason=o.message or "", run_id=run_id
                )
            elif o.kind == "error":
                await self._store.fail(
                    o.rec.id,
                    owner=self._owner,
                    category=o.category or ErrorCategory.REJECTED,
                    code=o.code or "ERROR",
                    message=o.message or "rejected by the hub",
                    run_id=run_id,
                )
            else:
                done.append(SyncedRecord(o.rec.id, o.link, o.transferred, o.skipped))
        if done:
            await self._store.link_and_complete(done, owner=self._owner, run_id=run_id)

    async def _plan_batch(
        self, entries: list[QueueEntry], settings: Settings, run_id: int, counts: PullCounts
    ) -> list[HubWrite]:
        by_obj: dict[ObjectType, list[QueueEntry]] = {}
        for e in entries:
            by_obj.setdefault(e.object, []).append(e)
        plans: list[HubWrite] = []
        for obj, group in by_obj.items():
            s = settings.sync.objects.get(obj)
            if s is None:
                for e in group:
                    await self._store.exclude(
                        e.id,
                        owner=self._owner,
                        reason="filtered: object not configured",
                        run_id=run_id,
                    )
                    counts.excluded += 1
                continue
            mapping = ObjectMapping.from_settings(obj, s)
            planned, settled = await self._plan_object(
                obj, group, mapping, settings, run_id, counts
            )
            # Claimed entries that need no hub write are settled at once.
            await self._settle_claimed(settled, run_id)
            _tally(obj, settled, counts)
            plans += planned
        return plans

    async def _plan_object(
        self,
        obj: ObjectType,
        group: Sequence[Outgoing],
        mapping: ObjectMapping,
        settings: Settings,
        run_id: int,
        counts: PullCounts,
        links: dict[str, RecordLink] | None = None,
    ) -> tuple[list[HubWrite], list[Outcome]]:
        """Decide each record's fate: the hub writes to make, and the outcomes of the records
        that need none (excluded, unchanged). `links`: the records' links, if already read.

        A linked record whose CRM values differ from its base is merged with the hub's
        current values (read for the batch at once); the hub receives what the merge
        resolved for it. A record new to the hub is created with its non-empty values."""
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
            if isinstance(e, QueueEntry) and _is_conversion(e):
                await self._convert(e, run_id, counts)
                continue
            if obj in NEW_TAG and settings.sync.only_with_email and not e.email:
                settled.append(
                    Outcome(
                        e,
                        "excluded",
                        message="no unique id: the record has no email (sync.only_with_email)",
                    )
                )
                continue
            payload = fields_of(e)
            crm = {f: payload.get(f) for f in crm_fields if f in payload}
            link = links.get(e.record_key)
            if link is None or not link.hub_id:
                m = merge({}, {}, crm, winner=winner, writes=(Side.HUB,))
                hub_fields = mapping.to_hub(m.to_hub)
                if new_tag is not None:
                    # hubs add (never replace) tags given on a write (to_hub made this dict)
                    hub_fields["tags"] = [new_tag]
                creates.add(e, link, hub_fields, {}, m.base, WriteItem(hub_fields))
                continue
            base = stored_base(link, mapping)
            if all(same(v, base.get(f)) for f, v in crm.items()) and link.base_origin is None:
                settled.append(Outcome(e, "skipped"))  # nothing changed in the CRM since
                continue
            changed.append((e, link, crm, base))
        current = await self._hub_values(obj, mapping, [lk.hub_id or "" for _, lk, _, _ in changed])
        for e, link, crm, base in changed:
            hub = current.get(link.hub_id or "")
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
        self, obj: ObjectType, mapping: ObjectMapping, hub_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        """The hub's current values of linked records, in CRM names (one read per batch of
        the hub's largest size); a record the hub no longer has is left out."""
        if not hub_ids:
            return {}
        hub_obj = ObjectType.CONTACT if obj in NEW_TAG else obj
        records = await self._hub.get_by_ids(hub_obj, hub_ids, fields=sorted(mapping.hub_to_crm))
        return {r.id: mapping.to_crm(r.fields) for r in records}

    async def _write_hub(self, plan: HubWrite) -> list[WriteResult]:
        """One hub write of a planned batch; a result per item."""
        obj, op, items = plan.object, plan.op, plan.items
        match = "email" if obj in NEW_TAG else None
        try:
            # Hubs keep people as contacts: CRM leads become hub contacts (tagged so).
            hub_obj = ObjectType.CONTACT if obj in NEW_TAG else obj
            results = await self._hub.write(hub_obj, op, items, match_field=match)
        except RequestRejected as exc:
            results = [
                WriteResult(
                    False,
                    error_category=ErrorCategory.REJECTED,
                    error_code=f"HTTP_{exc.status}",
                    error_message=str(exc),
                )
                for _ in items
            ]
        await self.gate.recovered()
        return results

    async def _convert(self, e: QueueEntry, run_id: int, counts: PullCounts) -> None:
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
                owner=self._owner,
                run_id=run_id,
                reason="filtered: converted lead was never synced to the hub",
            )
            counts.excluded += 1
            return
        tags = await self._hub.get_tags(hub_id)
        add, remove = tags_after_conversion(tags)
        if add:
            await self._hub.add_tags(hub_id, sorted(add))
        if remove:
            await self._hub.remove_tags(hub_id, sorted(remove))
        new_tags = (tags | add) - remove
        await self._store.upsert_link(
            RecordLink(
                object=ObjectType.CONTACT,
                hub_id=hub_id,
                crm_id=str(contact_id),
                email=e.email,
                name=e.name,
                sync_tags=frozenset(new_tags),
                last_synced_at=datetime.now(UTC),
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
                    sync_tags=frozenset(new_tags),
                    last_synced_at=datetime.now(UTC),
                )
            )
        transferred = {
            "object": "contact",
            "converted_contact_id": contact_id,
            "tags_added": sorted(add),
            "tags_removed": sorted(remove),
        }
        await self._store.complete(e.id, owner=self._owner, transferred=transferred, run_id=run_id)
        counts.converted += 1
        metrics.RECORDS.labels("outbound", "lead", "processed").inc()


def _tally(obj: ObjectType, outcomes: list[Outcome], counts: PullCounts) -> None:
    """Count recorded outcomes in the run and the metrics."""
    by_kind = Counter(o.kind for o in outcomes)
    for kind, n in by_kind.items():
        setattr(counts, _COUNT_OF[kind], getattr(counts, _COUNT_OF[kind]) + n)
        metrics.RECORDS.labels("outbound", obj.value, kind).inc(n)


_COUNT_OF = {
    "processed": "processed",
    "skipped": "skipped",
    "excluded": "excluded",
    "error": "errors",
}


def _minus(cursor: str | None, seconds: float) -> str | None:
    if cursor is None:
        return None
    try:
        at = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
    except ValueError:
        return cursor
    return (at - timedelta(seconds=seconds)).isoformat()


def _name_of(fields: dict[str, Any] | Any) -> str | None:
    first, last = fields.get("FirstName"), fields.get("LastName")
    if first and last:  # the usual case, without the join below (this runs per record)
        return f"{first!s} {last!s}"
    name = " ".join(str(p) for p in (first, last) if p) or fields.get("Name")
    return str(name) if name else None
