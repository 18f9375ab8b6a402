"""Inbound: the buffer of hub changes, flushed to the CRM on size, age, demand or drain.

This module decides when; `inbound_batch` sends each claimed batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from syncd.config import Settings
from syncd.errors import (
    IntegrationError,
    RecordError,
    RequestRejected,
    StoreError,
    TransientError,
)
from syncd.logging import get_logger
from syncd.model import Direction, ErrorCategory, QueueEntry, RunKind, RunTrigger
from syncd.store.leases import Leases, claim_owner, keep_leases, log_claimed
from syncd.store.protocols import StateStore
from syncd.store.recorder import recorded_run
from syncd.store.types import PendingStats
from syncd.sync.deletions import Deletions
from syncd.sync.gate import DirectionGate
from syncd.sync.inbound_batch import CRM_BATCH, FlushCounts, InboundBatch
from syncd.vendors.protocols import CrmConnector, HubConnector

log = get_logger("syncd.inbound")
# Consecutive failed flushes after which a transient batch failure is looked into record by
# record (a single outage is not: it costs no more than one call per flush).
_ISOLATE_AFTER = 2
# Under a webhook burst every commit wakes the trigger loop; it looks at the buffer at most
# this often, so its COUNT query stays off the intake path (a size flush waits ≤ this long).
_CHECK_GAP = 0.2


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
        self._deletions = Deletions(store, crm, hub, settings)
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
        await self.gate.refresh()
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
            await self.gate.refresh()
            if self.gate.blocked:
                return counts
            async with recorded_run(
                self._store,
                RunKind.FLUSH,
                trigger,
                counts=counts.as_dict,
                owner=self._owner,
                event="flushed",
            ) as run:
                try:
                    await self._flush_claimed(limit, run.id, counts)
                except IntegrationError as exc:
                    run.fail(str(exc))
                    counts.error = str(exc)
                    self._failures += 1
                    wait = min(5.0 * 2 ** (self._failures - 1), 60.0)
                    self._backoff_until = time.monotonic() + wait
                    if isinstance(exc, TransientError):
                        log.warning("flush_failed_transient", error=str(exc), retry_in=wait)
                    else:
                        await self.gate.report(exc)
                else:
                    self._failures = 0
            self.last_flush = time.time()
            return counts

    async def _flush_claimed(self, limit: int | None, run_id: int, counts: FlushCounts) -> None:
        lease = self._settings().daemon.lease_seconds
        while limit is None or counts.claimed < limit:
            want = CRM_BATCH if limit is None else min(CRM_BATCH, limit - counts.claimed)
            owner = claim_owner(self._owner)
            entries = await self._store.claim_pending(
                Direction.INBOUND, limit=want, owner=owner, lease_seconds=lease
            )
            if not entries:
                return
            log_claimed(Direction.INBOUND, owner, entries)
            counts.claimed += len(entries)
            try:
                async with keep_leases(self._store, entries, owner, lease) as leases:
                    await self._send_isolating(entries, run_id, counts, leases)
            except (IntegrationError, RequestRejected, asyncio.CancelledError):
                # Unfinished claims go back at once rather than waiting for their lease;
                # entries already completed stay completed (release only moves processing).
                await asyncio.shield(self._store.release([e.id for e in entries], owner=owner))
                raise
            if len(entries) < want:
                return

    def _batch(self, run_id: int, counts: FlushCounts, leases: Leases) -> InboundBatch:
        return InboundBatch(
            self._store,
            self._crm,
            self._hub,
            self._settings(),
            self.gate,
            leases,
            run_id,
            counts,
            self._deletions,
        )

    async def _send_isolating(
        self, entries: list[QueueEntry], run_id: int, counts: FlushCounts, leases: Leases
    ) -> None:
        """Send a claimed batch; when one record makes the whole batch fail, find it.

        A refused request (a 4xx about the request: a record the vendor cannot read), or a
        transient failure that came back flush after flush, may be one record's doing: the
        batch is split in halves until the records that fail alone are found. Those get
        a failed attempt each (retried later, then `error` after `max_attempts`); the others
        go through. A record is blamed only when others of its batch went through: when
        nothing does, it is the vendor, not a record, and the flush fails as before.
        """
        try:
            await self._batch(run_id, counts, leases).send(entries)
            return
        except RequestRejected:
            pass
        except TransientError:
            if self._failures < _ISOLATE_AFTER:
                raise
        sent, culprits = await self._bisect(entries, run_id, counts, leases)
        if not sent:
            raise TransientError("every part of the batch failed: the vendor, not a record")
        for entry, exc in culprits:
            log.warning("record_isolated", entry=entry.id, record=entry.record_key, error=str(exc))
            await self._batch(run_id, counts, leases).fail(
                entry, RecordError(ErrorCategory.TRANSIENT, "BATCH_FAILURE", str(exc))
            )

    async def _bisect(
        self, entries: list[QueueEntry], run_id: int, counts: FlushCounts, leases: Leases
    ) -> tuple[int, list[tuple[QueueEntry, Exception]]]:
        """(entries that went through, entries that fail alone with their error)."""
        try:
            await self._batch(run_id, counts, leases).send(entries)
            return len(entries), []
        except (RequestRejected, TransientError) as exc:
            if len(entries) == 1:
                return 0, [(entries[0], exc)]
        half = len(entries) // 2
        left = await self._bisect(entries[:half], run_id, counts, leases)
        right = await self._bisect(entries[half:], run_id, counts, leases)
        return left[0] + right[0], left[1] + right[1]
