"""Outbound: scheduled pulls of CRM changes since a cursor, written to the hub in batches.

A pull queues what it reads (coalesced per record), drains the outbound queue into the hub,
and advances its cursor only when every write of the pull went through.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from syncd import metrics
from syncd.config import ObjectSyncSettings, Settings
from syncd.connectors.base import CrmConnector, HubConnector
from syncd.engine.claims import log_claimed
from syncd.engine.conflicts import resolve
from syncd.engine.counts import RunCounts
from syncd.engine.eligibility import tags_after_conversion
from syncd.engine.gate import DirectionGate
from syncd.engine.mapping import ObjectMapping, content_hash
from syncd.engine.matching import normalize_email
from syncd.engine.rules import Condition, Op, Rule
from syncd.errors import IntegrationError, RequestRejected, TransientError
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
)
from syncd.store.base import RecordLink, StateStore, SyncedRecord

log = get_logger("syncd.outbound")
T = TypeVar("T")
HUB_BATCH = 500  # two AC bulk imports or five HubSpot batch calls: fewer store round trips
LEAD_CONVERSION_FIELDS = (
    "IsConverted",
    "ConvertedDate",
    "ConvertedContactId",
    "ConvertedAccountId",
)
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


@dataclass
class _HubWrite:
    """One planned hub write of a batch: the entries (with link, fields, skipped, hash)
    and the items to send, in the same order."""

    object: ObjectType
    op: WriteOp
    rows: list[tuple[QueueEntry, RecordLink | None, dict[str, Any], dict[str, str], str]] = field(
        default_factory=list
    )
    items: list[WriteItem] = field(default_factory=list)

    def add(
        self,
        e: QueueEntry,
        link: RecordLink | None,
        fields: dict[str, Any],
        skipped: dict[str, str],
        digest: str,
        item: WriteItem,
    ) -> None:
        """Plan one entry's write."""
        self.rows.append((e, link, fields, skipped, digest))
        self.items.append(item)


class _InFlight:
    """Batches on their way: at most one writing to the hub, the one before it perhaps still
    recording its outcome, while the next is claimed and planned."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []  # oldest first; each awaits the one before
        self._written = asyncio.Event()  # set once the newest is done with the hub

    @property
    def busy(self) -> bool:
        """A batch is on its way (or finished with an error nobody has seen yet)."""
        return bool(self._tasks)

    def start(self, send: _Send) -> None:
        """Send a batch: `send(previous, written)` sets `written` after its hub writes went
        through and awaits `previous` before recording its outcome (claim order)."""
        previous = self._tasks[-1] if self._tasks else None
        # Finished batches need no watching: a failure also fails every later batch.
        self._tasks = [t for t in self._tasks if not t.done() or t is previous]
        self._written = asyncio.Event()
        self._tasks.append(asyncio.ensure_future(send(previous, self._written)))

    async def hub_free(self) -> None:
        """Wait until the newest batch is done with the hub; raise its error if it failed."""
        if not self._tasks:
            return
        newest = self._tasks[-1]
        written = asyncio.ensure_future(self._written.wait())
        try:
            await asyncio.wait({newest, written}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            written.cancel()
        if newest.done():
            newest.result()

    async def wait(self) -> None:
        """Wait for every batch on its way, oldest first; the first error raises here."""
        for task in self._tasks:
            await task
        self._tasks = []

    async def abandon(self) -> None:
        """Cancel the batches on their way (they give their claims back); wait for them."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


_Send = Callable[[asyncio.Task[None] | None, asyncio.Event], Coroutine[Any, Any, None]]


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
            if not await self._store.try_job_lock(f"pull:{obj.value}", self._owner, ttl):
                raise PullBusy(f"a pull of {obj.value} is running on another instance")
            try:
                return await self._pull_locked(obj, trigger, settings)
            finally:
                await self._store.release_job_lock(f"pull:{obj.value}", self._owner)

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
        flight = _InFlight()
        try:
            newest = await self._pull_into_queue(obj, settings, run_id, counts, pages, flight)
            await self._drain(obj, settings, run_id, counts, flight, final=True)
        finally:
            await flight.abandon()  # only on an error: the final drain waited for every batch
        if newest and (cursor is None or newest > cursor):
            await self._store.set_cursor(cursor_name(obj), newest)

    async def _pull_into_queue(
        self,
        obj: ObjectType,
        settings: Settings,
        run_id: int,
        counts: PullCounts,
        pages: AsyncIterator[Page],
        flight: _InFlight,
    ) -> str | None:
        """Queue each page and drain what is claimable; the newest cursor the pages gave."""
        newest: str | None = None
        async with contextlib.aclosing(_read_ahead(pages)) as ahead:
            async for page in ahead:
                counts.read += len(page.records)
                changes = [
                    Change(
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
                await self._store.enqueue(changes)
                await self._drain(obj, settings, run_id, counts, flight)
                if page.cursor and (newest is None or page.cursor > newest):
                    newest = page.cursor
        return newest

    async def _drain(
        self,
        obj: ObjectType,
        settings: Settings,
        run_id: int,
        counts: PullCounts,
        flight: _InFlight,
        *,
        final: bool = False,
    ) -> None:
        """Claim, plan and send batches until none is claimable.

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
            try:
                if flight.busy and any(_is_conversion(e) for e in entries):
                    # A conversion reads the converted contact's link: let the batches that
                    # may be writing it land first.
                    await flight.wait()
                plans = await self._plan_batch(entries, settings, run_id, counts)
                await flight.hub_free()
            except (IntegrationError, asyncio.CancelledError):
                await asyncio.shield(self._release(entries))
                raise
            flight.start(functools.partial(self._send_batch, entries, plans, run_id, counts))

    async def _release(self, entries: list[QueueEntry]) -> None:
        """Unfinished claims go back at once rather than waiting for their lease."""
        await self._store.release([e.id for e in entries], owner=self._owner)

    async def _send_batch(
        self,
        entries: list[QueueEntry],
        plans: list[_HubWrite],
        run_id: int,
        counts: PullCounts,
        previous: asyncio.Task[None] | None,
        written: asyncio.Event,
    ) -> None:
        """Write a planned batch to the hub, then record its outcome after the previous
        batch recorded its own (so the store sees outcomes in claim order)."""
        try:
            results = [await self._write_hub(plan) for plan in plans]
            written.set()
            if previous is not None:
                await previous
            for plan, res in zip(plans, results, strict=True):
                await self._record(plan, res, run_id, counts)
        except (IntegrationError, asyncio.CancelledError):
            await asyncio.shield(self._release(entries))
            raise

    async def _plan_batch(
        self, entries: list[QueueEntry], settings: Settings, run_id: int, counts: PullCounts
    ) -> list[_HubWrite]:
        by_obj: dict[ObjectType, list[QueueEntry]] = {}
        for e in entries:
            by_obj.setdefault(e.object, []).append(e)
        plans: list[_HubWrite] = []
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
            plans += await self._plan_object(
                obj, group, ObjectMapping.from_settings(obj, s), settings, run_id, counts
            )
        return plans

    async def _plan_object(
        self,
        obj: ObjectType,
        group: list[QueueEntry],
        mapping: ObjectMapping,
        settings: Settings,
        run_id: int,
        counts: PullCounts,
    ) -> list[_HubWrite]:
        """Decide each entry's fate; settle what needs no hub write; the writes to make."""
        updates = _HubWrite(obj, WriteOp.UPDATE)
        creates = _HubWrite(obj, WriteOp.UPSERT)
        # One query each for the batch's links and the inbound entries pending against them,
        # instead of a store round trip per record.
        links = await self._store.get_links(obj, [e.record_key for e in group])
        linked_hub_ids = [lk.hub_id for lk in links.values() if lk.hub_id]
        pending = (
            await self._store.pending_entries(Direction.INBOUND, linked_hub_ids)
            if linked_hub_ids
            else {}
        )
        crm_fields = mapping.crm_fields  # a property that builds a list: once per batch
        unchanged: list[SyncedRecord] = []
        excluded = 0
        for e in group:
            if obj is ObjectType.LEAD and e.payload.get("IsConverted"):
                await self._convert(e, run_id, counts)
                continue
            if obj in NEW_TAG and settings.sync.only_with_email and not e.email:
                await self._store.exclude(
                    e.id,
                    owner=self._owner,
                    reason="no unique id: the record has no email (sync.only_with_email)",
                    run_id=run_id,
                )
                excluded += 1
                continue
            payload = e.payload
            digest = content_hash({f: payload.get(f) for f in crm_fields if f in payload})
            link = links.get(e.record_key)
            if link is not None and link.hub_id and link.content_hash == digest:
                unchanged.append(SyncedRecord(e.id, None))
                continue
            hub_fields = mapping.to_hub(payload)
            skipped: dict[str, str] = {}
            if link is not None and link.hub_id:
                other = pending.get(link.hub_id)
                if other is not None:
                    resolution = resolve(
                        hub_fields,
                        {k: v for k, v in other.payload.items() if k in other.changed_fields},
                        sending_side="crm",
                        winner=settings.sync.conflict_winner,
                    )
                    hub_fields, skipped = resolution.write, resolution.skipped
                updates.add(
                    e, link, hub_fields, skipped, digest, WriteItem(hub_fields, id=link.hub_id)
                )
                continue
            if obj in NEW_TAG:
                # hubs add (never replace) tags given on a write
                hub_fields = {**hub_fields, "tags": [NEW_TAG[obj]]}
            creates.add(e, link, hub_fields, skipped, digest, WriteItem(hub_fields))
        if excluded:
            counts.excluded += excluded
            metrics.RECORDS.labels("outbound", obj.value, "excluded").inc(excluded)
        if unchanged:
            await self._store.link_and_complete(unchanged, owner=self._owner, run_id=run_id)
            counts.skipped += len(unchanged)
            metrics.RECORDS.labels("outbound", obj.value, "skipped").inc(len(unchanged))
        return [w for w in (updates, creates) if w.rows]

    async def _write_hub(self, plan: _HubWrite) -> list[WriteResult]:
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

    async def _record(
        self, plan: _HubWrite, results: list[WriteResult], run_id: int, counts: PullCounts
    ) -> None:
        """A hub write's outcome per record in the store: links and completions, failures."""
        obj, items = plan.object, plan.items
        synced: list[SyncedRecord] = []
        errors = 0
        now = datetime.now(UTC)
        for (e, link, _, skipped, digest), item, res in zip(plan.rows, items, results, strict=True):
            if res.ok:
                new_link = RecordLink(
                    object=obj,
                    hub_id=res.id or (link.hub_id if link else None),
                    crm_id=e.record_key,
                    email=e.email,
                    name=e.name,
                    sync_tags=frozenset(item.fields.get("tags", ()))
                    | (link.sync_tags if link else frozenset()),
                    content_hash=digest,
                    last_synced_at=now,
                )
                transferred = {
                    "object": obj.value,
                    "fields": dict(item.fields),
                    "created": res.created,
                }
                synced.append(SyncedRecord(e.id, new_link, transferred, skipped))
            else:
                await self._store.fail(
                    e.id,
                    owner=self._owner,
                    category=res.error_category or ErrorCategory.REJECTED,
                    code=res.error_code or "ERROR",
                    message=res.error_message or "rejected by the hub",
                    run_id=run_id,
                )
                errors += 1
        if errors:
            counts.errors += errors
            metrics.RECORDS.labels("outbound", obj.value, "error").inc(errors)
        if synced:
            await self._store.link_and_complete(synced, owner=self._owner, run_id=run_id)
            counts.processed += len(synced)
            metrics.RECORDS.labels("outbound", obj.value, "processed").inc(len(synced))

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


async def _read_ahead(pages: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """Yield `pages`, reading the next one while the caller writes this one to the hub."""
    it = aiter(pages)
    nxt: asyncio.Future[T] = asyncio.ensure_future(anext(it))
    try:
        while True:
            try:
                page = await nxt
            except StopAsyncIteration:
                return
            nxt = asyncio.ensure_future(anext(it))
            yield page
    finally:
        if not nxt.done():
            nxt.cancel()
            with contextlib.suppress(BaseException):
                await nxt
        elif not nxt.cancelled():
            nxt.exception()  # consumed: an error of a page nobody asked for is not "lost"


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
    name = " ".join(str(p) for p in (first, last) if p) or fields.get("Name")
    return str(name) if name else None
