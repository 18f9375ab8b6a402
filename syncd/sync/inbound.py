"""Inbound: the buffer of hub changes, flushed to the CRM on size, age, demand or drain."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd import metrics
from syncd.config import Settings
from syncd.emails import is_valid_email, normalize_email
from syncd.errors import (
    IntegrationError,
    RecordError,
    RequestRejected,
    StoreError,
    TransientError,
)
from syncd.logging import get_logger
from syncd.model import (
    HINT_KEY,
    Direction,
    ErrorCategory,
    ObjectType,
    QueueEntry,
    RunKind,
    RunTrigger,
    WriteItem,
    WriteOp,
    WriteResult,
    parse_tags,
)
from syncd.rules import Condition, Op
from syncd.store.leases import keep_leases, log_claimed
from syncd.store.protocols import StateStore
from syncd.store.types import PendingStats, RecordLink
from syncd.sync.conflicts import resolve
from syncd.sync.counts import RunCounts
from syncd.sync.eligibility import Excluded, inbound_target
from syncd.sync.gate import DirectionGate
from syncd.sync.mapping import ObjectMapping, content_hash
from syncd.vendors.protocols import CrmConnector, HubConnector

log = get_logger("syncd.inbound")
CRM_BATCH = 200
_RECORD_RETRY = {ErrorCategory.TRANSIENT}
# Under a webhook burst every commit wakes the trigger loop; it looks at the buffer at most
# this often, so its COUNT query stays off the intake path (a size flush waits ≤ this long).
_CHECK_GAP = 0.2


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
    entry: QueueEntry
    target: ObjectType
    hub_fields: dict[str, Any]
    crm_fields: dict[str, Any]
    link: RecordLink | None
    skipped: dict[str, str] = field(default_factory=dict)
    crm_id: str | None = None
    hash: str = ""


class InboundFlusher:
    """Decides when to flush and writes claimed entries to the CRM in ≤200-record batches."""

    def __init__(
        self,
        store: StateStore,
        crm: CrmConnector,
        hub: HubConnector | None,
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
        self._wake = asyncio.Event()
        self._manual: list[asyncio.Future[FlushCounts]] = []
        self._lock = asyncio.Lock()
        self.last_flush: float | None = None
        self._backoff_until = 0.0  # monotonic; after a failed flush, automatic triggers wait
        self._failures = 0

    # -- triggers ------------------------------------------------------------------------
    def notify_arrivals(self, _count: int = 0) -> None:
        """New changes were committed: re-check the size trigger."""
        self._wake.set()

    def request(self) -> asyncio.Future[FlushCounts]:
        """Ask for a manual flush; the future resolves with its counts."""
        fut: asyncio.Future[FlushCounts] = asyncio.get_running_loop().create_future()
        self._manual.append(fut)
        self._wake.set()
        return fut

    async def run(self) -> None:
        """The trigger loop: size, interval, manual; owned by the engine component."""
        checked = 0.0
        stats: PendingStats | None = None
        while True:
            try:
                async with asyncio.timeout(self._seconds_until_due(stats)):
                    await self._wake.wait()
            except TimeoutError:
                pass
            gap = checked + _CHECK_GAP - time.monotonic()
            if gap > 0 and not self._manual:
                await asyncio.sleep(gap)
            self._wake.clear()
            checked = time.monotonic()
            stats = await self._maybe_flush()

    def _seconds_until_due(self, stats: PendingStats | None) -> float:
        """How long to sleep, from what the last check saw (no query of its own)."""
        backoff = self._backoff_until - time.monotonic()
        if stats is None:
            # Paused, backing off or the store failed: look again later (or when woken).
            return min(max(backoff, 2.0), 60.0)
        interval = self._settings().inbound.flush_interval
        if stats.oldest_created_at is None:
            return max(interval, 1.0)
        age = (datetime.now(UTC) - stats.oldest_created_at).total_seconds()
        return min(max(interval - age, backoff, 0.05), 60.0)

    async def _maybe_flush(self) -> PendingStats | None:
        manual, self._manual = self._manual, []
        s = self._settings().inbound
        if not manual and (self.gate.blocked or time.monotonic() < self._backoff_until):
            # Nothing may be written now: do not count a buffer that may be large.
            return None
        try:
            stats = await self._store.pending_stats(Direction.INBOUND)
        except StoreError as exc:
            for fut in manual:
                if not fut.done():
                    fut.set_exception(exc)
            return None
        trigger: RunTrigger | None = None
        limit: int | None = None
        age = (
            (datetime.now(UTC) - stats.oldest_created_at).total_seconds()
            if stats.oldest_created_at
            else 0.0
        )
        if manual:
            trigger = RunTrigger.MANUAL
        elif stats.count >= s.flush_size:
            trigger = RunTrigger.SIZE
            # Whole multiples of flush_size, so a size flush sends what reached the threshold.
            limit = (stats.count // s.flush_size) * s.flush_size
        elif stats.count and age >= s.flush_interval:
            trigger = RunTrigger.INTERVAL
        if trigger is None:
            return stats
        try:
            counts = await self.flush(trigger, limit=limit)
        except Exception as exc:
            for fut in manual:
                if not fut.done():
                    fut.set_exception(exc)
            if isinstance(exc, StoreError):
                log.warning("flush_store_error", error=str(exc))
                return None
            raise
        for fut in manual:
            if not fut.done():
                fut.set_result(counts)
        return None  # the buffer changed: the next check reads it again

    # -- the flush -----------------------------------------------------------------------
    async def flush(self, trigger: RunTrigger, *, limit: int | None = None) -> FlushCounts:
        """Claim pending entries and write them; returns the counts (also kept as a run)."""
        async with self._lock:
            counts = FlushCounts()
            if self.gate.blocked:
                return counts
            started = time.perf_counter()
            run_id = await self._store.start_run(RunKind.FLUSH, trigger, owner=self._owner)
            status, error = "succeeded", None
            try:
                await self._flush_claimed(trigger, limit, run_id, counts)
            except IntegrationError as exc:
                status, error = "failed", str(exc)
                self._failures += 1
                wait = min(5.0 * 2 ** (self._failures - 1), 60.0)
                self._backoff_until = time.monotonic() + wait
                if isinstance(exc, TransientError):
                    log.warning("flush_failed_transient", error=str(exc), retry_in=wait)
                else:
                    await self.gate.report(exc)
            else:
                self._failures = 0
            finally:
                await self._store.finish_run(
                    run_id, counts=counts.as_dict(), status=status, error=error
                )
            metrics.FLUSHES.labels(trigger.value).inc()
            metrics.FLUSH_DURATION.observe(time.perf_counter() - started)
            if status == "succeeded":
                metrics.LAST_SUCCESS.labels("flush").set_to_current_time()
            self.last_flush = time.time()
            log.info("flushed", trigger=trigger.value, run=run_id, **counts.as_dict())
            return counts

    async def _flush_claimed(
        self, trigger: RunTrigger, limit: int | None, run_id: int, counts: FlushCounts
    ) -> None:
        lease = self._settings().daemon.lease_seconds
        while limit is None or counts.claimed < limit:
            want = CRM_BATCH if limit is None else min(CRM_BATCH, limit - counts.claimed)
            entries = await self._store.claim_pending(
                Direction.INBOUND, limit=want, owner=self._owner, lease_seconds=lease
            )
            if not entries:
                return
            log_claimed(Direction.INBOUND, self._owner, entries)
            counts.claimed += len(entries)
            try:
                async with keep_leases(self._store, entries, self._owner, lease):
                    await self._process(entries, run_id, counts)
            except (IntegrationError, asyncio.CancelledError):
                # Unfinished claims go back at once rather than waiting for their lease;
                # entries already completed stay completed (release only moves processing).
                await asyncio.shield(
                    self._store.release([e.id for e in entries], owner=self._owner)
                )
                raise
            if len(entries) < want:
                return

    async def _process(self, entries: list[QueueEntry], run_id: int, counts: FlushCounts) -> None:
        settings = self._settings()
        entries = await self._refresh_hints(entries, run_id, counts)
        planned: list[_Planned] = []
        for entry in entries:
            try:
                plan = await self._plan(entry, settings)
            except RecordError as exc:
                await self._fail(entry, exc, run_id, counts)
                continue
            if isinstance(plan, Excluded):
                await self._store.exclude(
                    entry.id, owner=self._owner, reason=plan.reason, run_id=run_id
                )
                counts.excluded += 1
                metrics.RECORDS.labels("inbound", entry.object.value, "excluded").inc()
                continue
            if plan.link is not None and plan.link.content_hash == plan.hash and plan.link.crm_id:
                # Nothing mapped changed since the last sync: no API call.
                await self._store.complete(
                    entry.id, owner=self._owner, transferred={}, skipped=plan.skipped, run_id=run_id
                )
                counts.skipped += 1
                metrics.RECORDS.labels("inbound", plan.target.value, "skipped").inc()
                continue
            planned.append(plan)
        for obj in (ObjectType.CONTACT, ObjectType.LEAD):
            group = [p for p in planned if p.target is obj]
            if group:
                await self._write(obj, group, settings, run_id, counts)

    async def _refresh_hints(
        self, entries: list[QueueEntry], run_id: int, counts: FlushCounts
    ) -> list[QueueEntry]:
        hinted = [e for e in entries if e.payload.get(HINT_KEY)]
        if not hinted or self._hub is None:
            return entries
        current = {
            r.id: r
            for r in await self._hub.get_by_ids(ObjectType.CONTACT, [e.record_key for e in hinted])
        }
        out: list[QueueEntry] = []
        for e in entries:
            if not e.payload.get(HINT_KEY):
                out.append(e)
                continue
            rec = current.get(e.record_key)
            if rec is None:
                reason = "deleted in the hub before it could be sent"
                await self._store.exclude(e.id, owner=self._owner, reason=reason, run_id=run_id)
                counts.excluded += 1
                continue
            payload = {**dict(rec.fields), "tags": sorted(rec.tags)}
            out.append(_with_payload(e, payload))
        return out

    async def _plan(self, entry: QueueEntry, settings: Settings) -> _Planned | Excluded:
        fields = dict(entry.payload)
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
        mapping = ObjectMapping.from_settings(target.object, obj_settings)
        link = await self._store.get_link(target.object, hub_id=entry.record_key)
        mapping.validate_hub(fields, creating=link is None or link.crm_id is None)
        if email and not is_valid_email(email):
            raise RecordError(ErrorCategory.VALIDATION, "INVALID_EMAIL", f"invalid email {email!r}")
        crm_fields = mapping.to_crm(fields)
        plan = _Planned(
            entry, target.object, fields, crm_fields, link, hash=content_hash(crm_fields)
        )
        if link is not None and link.crm_id:
            pending = await self._store.pending_entries(Direction.OUTBOUND, [link.crm_id])
            other = pending.get(link.crm_id)
            if other is not None:
                res = resolve(
                    crm_fields,
                    {k: v for k, v in other.payload.items() if k in other.changed_fields},
                    sending_side="hub",
                    winner=settings.sync.conflict_winner,
                )
                plan.crm_fields, plan.skipped = res.write, res.skipped
        return plan

    async def _write(
        self,
        obj: ObjectType,
        group: list[_Planned],
        settings: Settings,
        run_id: int,
        counts: FlushCounts,
    ) -> None:
        crm_settings = settings.crm
        ext_field = crm_settings.external_id_fields.get(obj) if crm_settings else None
        await self._match_by_email(obj, [p for p in group if not (p.link and p.link.crm_id)])
        updates = [p for p in group if p.crm_id or (p.link and p.link.crm_id)]
        creates = [p for p in group if p not in updates]
        for op, batch in ((WriteOp.UPDATE, updates), (WriteOp.UPSERT, creates)):
            if not batch:
                continue
            items = []
            for p in batch:
                fields = dict(p.crm_fields)
                if ext_field:
                    fields[ext_field] = p.entry.record_key
                crm_id = p.crm_id or (p.link.crm_id if p.link else None)
                items.append(WriteItem(fields, id=crm_id if op is WriteOp.UPDATE else None))
            if op is WriteOp.UPSERT and not ext_field:
                op = WriteOp.CREATE
            try:
                results = await self._crm.write(obj, op, items, match_field=ext_field)
            except RequestRejected as exc:
                # The whole call was refused: every record of it fails with the vendor's word.
                err = RecordError(ErrorCategory.REJECTED, f"HTTP_{exc.status}", str(exc))
                for p in batch:
                    await self._fail(p.entry, err, run_id, counts)
                continue
            counts.crm_calls += -(-len(items) // CRM_BATCH)
            await self.gate.recovered()
            for p, item, res in zip(batch, items, results, strict=True):
                await self._record_result(p, item, res, run_id, counts)

    async def _match_by_email(self, obj: ObjectType, unlinked: list[_Planned]) -> None:
        by_email: dict[str, list[_Planned]] = {}
        for p in unlinked:
            e = normalize_email(p.hub_fields.get("email"))
            if e:
                by_email.setdefault(e, []).append(p)
        emails = sorted(by_email)
        for i in range(0, len(emails), CRM_BATCH):
            chunk = emails[i : i + CRM_BATCH]
            criteria = Condition("Email", Op.IN, tuple(chunk))
            async for page in self._crm.changed_since(
                obj, None, fields=["Email"], criteria=criteria
            ):
                for rec in page.records:
                    key = normalize_email(rec.email)
                    for p in by_email.get(key or "", []):
                        p.crm_id = p.crm_id or rec.id

    async def _record_result(
        self, p: _Planned, item: WriteItem, res: WriteResult, run_id: int, counts: FlushCounts
    ) -> None:
        e = p.entry
        if res.ok:
            await self._store.upsert_link(
                RecordLink(
                    object=p.target,
                    hub_id=e.record_key,
                    crm_id=res.id or p.crm_id or (p.link.crm_id if p.link else None),
                    email=normalize_email(p.hub_fields.get("email")),
                    name=e.name,
                    sync_tags=parse_tags(p.hub_fields.get("tags")),
                    content_hash=p.hash,
                    last_synced_at=datetime.now(UTC),
                )
            )
            transferred = {"object": p.target.value, "fields": dict(item.fields)}
            await self._store.complete(
                e.id, owner=self._owner, transferred=transferred, skipped=p.skipped, run_id=run_id
            )
            counts.processed += 1
            metrics.RECORDS.labels("inbound", p.target.value, "processed").inc()
            return
        category = res.error_category or ErrorCategory.REJECTED
        err = RecordError(category, res.error_code or "ERROR", res.error_message or "rejected")
        await self._fail(e, err, run_id, counts)

    async def _fail(
        self, e: QueueEntry, err: RecordError, run_id: int, counts: FlushCounts
    ) -> None:
        inbound = self._settings().inbound
        retry_at = None
        if err.category in _RECORD_RETRY and e.attempts + 1 < inbound.max_attempts:
            delay = min(inbound.retry_base_delay * 2**e.attempts, 3600.0)
            retry_at = datetime.now(UTC) + timedelta(seconds=random.uniform(delay / 2, delay))
        await self._store.fail(
            e.id,
            owner=self._owner,
            category=err.category,
            code=err.code,
            message=err.message,
            retry_at=retry_at,
            run_id=run_id,
        )
        if retry_at is not None:
            counts.retried += 1
        else:
            counts.errors += 1
            metrics.RECORDS.labels("inbound", e.object.value, "error").inc()


def _with_payload(e: QueueEntry, payload: dict[str, Any]) -> QueueEntry:
    return replace(e, payload=payload)
