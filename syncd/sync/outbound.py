"""Outbound: scheduled pulls of CRM changes since a cursor, written to the hub in batches.

A pull sends what it reads straight to the hub and records each record's outcome once
(its link and its entry, already processed, error or excluded); a record that already has
an outbound entry pending or in flight (or a converted lead) goes through the queue instead,
merging with that entry. The cursor advances only when every write of the pull went
through, so a pull that dies re-reads what it had not recorded; one that fails queues it.
What each record becomes in the hub is decided in `outbound_plan`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd import metrics
from syncd.config import ObjectSyncSettings, Settings
from syncd.emails import normalize_email
from syncd.errors import IntegrationError, StoreError, TransientError
from syncd.logging import get_logger
from syncd.model import (
    Change,
    Direction,
    ObjectType,
    Page,
    QueueEntry,
    RunKind,
    RunTrigger,
    WriteResult,
    builder,
)
from syncd.rules import Condition, Op, Rule
from syncd.store.leases import JobLock, Leases, claim_owner, keep_leases, log_claimed
from syncd.store.protocols import StateStore
from syncd.store.recorder import recorded_run
from syncd.store.types import RecordLink
from syncd.sync.cluster import take_turn
from syncd.sync.deletions import Deletions
from syncd.sync.flight import HubWrite, Outcome, merged, outcomes_of, read_ahead
from syncd.sync.gate import DirectionGate
from syncd.sync.outbound_plan import HubPlanner
from syncd.sync.pull_run import (
    HUB_BATCH,
    LEAD_CONVERSION_FIELDS,
    NEW_TAG,
    PullBusy,
    PullCounts,
    PullNotDue,
    PullRun,
    cursor_name,
    is_conversion,
)
from syncd.vendors.protocols import CrmConnector, HubConnector

log = get_logger("syncd.outbound")
_change = builder(Change)  # one per record pulled: without per-field setattr
_ASSOCIATE_EVERY = 2000  # pulled records whose primary company is set at once


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
        self._settings = settings
        self.gate = gate
        self._owner = owner
        self._hub = hub
        self._deletions = Deletions(store, crm, hub, settings)
        self._planner = HubPlanner(store, hub, gate, self._deletions)
        self._locks: dict[ObjectType, asyncio.Lock] = {}

    async def pull(
        self,
        obj: ObjectType,
        trigger: RunTrigger,
        *,
        due_every: float | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> PullCounts:
        """Pull one object now; raises PullBusy if a pull of it is already running.

        A scheduled pull gives its interval (`due_every`): it runs only if no instance
        started one within it (PullNotDue), so the schedule holds for the cluster."""
        lock = self._locks.setdefault(obj, asyncio.Lock())
        if lock.locked():
            raise PullBusy(f"a pull of {obj.value} is already running here")
        async with lock:
            settings = self._settings()
            ttl = max(settings.daemon.lease_seconds, 60.0)
            job = JobLock(self._store, f"pull:{obj.value}", self._owner, ttl)
            if not await job.take():
                raise PullBusy(f"a pull of {obj.value} is running on another instance")
            # Records sent directly are safe from other instances only while we hold the
            # lock: kept however long the pull takes, checked before every hub write.
            async with job.kept():
                if due_every is not None and not await take_turn(self._store, job.name, due_every):
                    raise PullNotDue(f"a pull of {obj.value} already ran in this interval")
                if on_start is not None:
                    on_start()
                return await self._pull_locked(obj, trigger, settings, job)

    async def _pull_locked(
        self, obj: ObjectType, trigger: RunTrigger, settings: Settings, job: JobLock
    ) -> PullCounts:
        s = settings.sync.objects.get(obj)
        if s is None or not s.enabled or s.direction == "hub-to-crm" or s.selection == "none":
            return PullCounts()
        await self.gate.refresh()
        if self.gate.blocked:
            return PullCounts()
        counts = PullCounts()
        async with recorded_run(
            self._store,
            RunKind.PULL,
            trigger,
            counts=counts.as_dict,
            owner=self._owner,
            name=obj.value,
            event="pulled",
        ) as record:
            run = PullRun(obj, settings, s, record.id, job, counts)
            if self._tracks_accounts(obj, settings):
                run.accounts = {}
            try:
                since = await self._store.get_cursor(cursor_name(obj))
                await self._pull_pages(run)
                await job.check()  # deletions may be propagated to the hub
                counts.deleted = await self._deletions.from_crm(obj, since)
                await self.gate.recovered()
            except IntegrationError as exc:
                record.fail(str(exc))
                counts.error = str(exc)
                if not isinstance(exc, TransientError):
                    await self.gate.report(exc)
                log.warning("pull_failed", object=obj.value, error=str(exc))
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

    async def _pull_pages(self, run: PullRun) -> None:
        obj = run.obj
        cursor = await self._store.get_cursor(cursor_name(obj))
        since = _minus(cursor, run.settings.outbound.overlap_seconds)
        criteria = await self._criteria(obj, run.object_settings)
        fields = list(run.mapping.crm_fields)
        if obj in NEW_TAG:
            fields.append("Email")
        if run.accounts is not None:
            fields.append("AccountId")
        if obj is ObjectType.LEAD:
            # The connector also reads leads converted since the cursor, whatever the criteria.
            fields += LEAD_CONVERSION_FIELDS
        pages = self._crm.changed_since(obj, since, fields=sorted(set(fields)), criteria=criteria)
        try:
            newest = await self._pull_into_hub(run, pages)
            await self._drain(run, final=True)
            await self._associate(run)
        except BaseException:
            await run.flight.abandon()
            # What this pull read but did not settle waits as pending entries, as if queued
            # on arrival: the next pull merges with them.
            await asyncio.shield(self._requeue(run))
            raise
        finally:
            await run.flight.abandon()  # only on an error: the final drain waited for all
        if newest and (cursor is None or newest > cursor):
            await self._store.set_cursor(cursor_name(obj), newest)

    async def _pull_into_hub(self, run: PullRun, pages: AsyncIterator[Page]) -> str | None:
        """Send each page to the hub, directly or through the queue; the newest cursor the
        pages gave."""
        newest: str | None = None
        async with contextlib.aclosing(read_ahead(pages)) as ahead:
            async for page in ahead:
                run.counts.read += len(page.records)
                if run.accounts is not None:
                    run.accounts.update(
                        (r.id, str(r.fields["AccountId"]))
                        for r in page.records
                        if r.fields.get("AccountId")
                    )
                    if len(run.accounts) >= _ASSOCIATE_EVERY:
                        await run.flight.wait()  # the records' links are recorded
                        await self._associate(run)
                changes = [
                    _change(
                        direction=Direction.OUTBOUND,
                        object=run.obj,
                        record_key=r.id,
                        source="pull",
                        fields=r.fields,  # the page's own dict: nothing else holds it
                        email=normalize_email(r.email),
                        name=_name_of(r.fields),
                        event="converted" if r.fields.get("IsConverted") else "update",
                    )
                    for r in page.records
                ]
                queued, direct = await self._split(run.obj, changes)
                if queued:
                    await self._store.enqueue(queued)
                await self._drain(run)
                links = await self._page_links(run, direct)
                for at in range(0, len(direct), HUB_BATCH):
                    part = direct[at : at + HUB_BATCH]
                    await self._send_direct(run, part, run.unsettled.add(part), links)
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

    async def _page_links(self, run: PullRun, direct: list[Change]) -> dict[str, RecordLink] | None:
        """The links of a page's direct changes, read once for all its batches; None when a
        batch still on its way carries one of them (each batch then reads its own after it).

        Read before the batches in flight record their outcomes, so the next batch is planned
        without waiting behind them in the store: only this pull writes these links meanwhile.
        """
        keys = [c.record_key for c in direct]
        if not keys or run.flight.holds(keys):
            return None
        return await self._store.get_links(run.obj, keys)

    async def _send_direct(
        self,
        run: PullRun,
        changes: list[Change],
        token: int,
        links: dict[str, RecordLink] | None,
    ) -> None:
        """Plan a batch of pulled changes and send it; its outcome is recorded once.

        `links` are the page's links, read before any batch in flight could change them."""
        keys = [c.record_key for c in changes]
        if links is None and run.flight.holds(keys):
            # An earlier batch of this pull carries one of these records: plan on its links.
            await run.flight.wait()
        plans, settled = await self._planner.plan(run, changes, links)
        await run.flight.hub_free()
        recorded = run.unsettled.done(token)
        run.flight.start(functools.partial(self._send_settled, run, plans, settled, recorded), keys)
        # Let the batch send its first hub call before the next one is planned.
        await asyncio.sleep(0)

    async def _send_settled(
        self,
        run: PullRun,
        plans: list[HubWrite],
        settled: list[Outcome],
        recorded: Callable[[], None],
        previous: asyncio.Task[None] | None,
        written: asyncio.Event,
    ) -> None:
        """Write a batch of direct changes to the hub, then (after the previous batch) record
        every outcome, links and entries, in one store transaction."""
        results = [await self._planner.write(run, plan) for plan in plans]
        written.set()
        if previous is not None:
            await previous
        outcomes = list(settled)
        for plan, res in zip(plans, results, strict=True):
            outcomes += outcomes_of(plan, res)
        await self._store.record_settled([o.settled() for o in outcomes], run_id=run.run_id)
        recorded()
        run.tally(outcomes)

    async def _drain(self, run: PullRun, *, final: bool = False) -> None:
        """Claim, plan and send queued batches until none is claimable.

        While one batch is written to the hub, the next is claimed and planned (store work
        and mapping overlap the hub's answer); hub writes themselves stay one at a time, in
        claim order. Unless `final`, the last batch may still be in flight on return.
        """
        lease = run.settings.daemon.lease_seconds
        flight = run.flight
        while True:
            owner = claim_owner(self._owner)
            entries = await self._store.claim_pending(
                Direction.OUTBOUND,
                limit=HUB_BATCH,
                owner=owner,
                lease_seconds=lease,
                obj=run.obj,
            )
            if not entries:
                if final and flight.busy:
                    # A record of the in-flight batch may have a newer entry waiting on it.
                    await flight.wait()
                    continue
                return
            log_claimed(Direction.OUTBOUND, owner, entries)
            keys = [e.record_key for e in entries]
            try:
                if flight.busy and (any(is_conversion(e) for e in entries) or flight.holds(keys)):
                    # A conversion reads the converted contact's link, and a record sent
                    # directly may be on its way: let the batches before land first.
                    await flight.wait()
                plans = await self._planner.plan_claimed(run, entries)
                await flight.hub_free()
            except (IntegrationError, asyncio.CancelledError):
                await asyncio.shield(self._release(entries, owner))
                raise
            send = functools.partial(self._send_batch, run, entries, owner, plans, lease)
            flight.start(send, keys)

    def _tracks_accounts(self, obj: ObjectType, settings: Settings) -> bool:
        accounts = settings.sync.objects.get(ObjectType.ACCOUNT)
        return (
            obj in (ObjectType.CONTACT, ObjectType.OPPORTUNITY)
            and accounts is not None
            and accounts.enabled
            and self._hub.keeps_primary_companies
        )

    async def _associate(self, run: PullRun) -> None:
        """Each pulled contact's or deal's primary company in the hub: the hub company
        linked to its Salesforce account, when both are linked (leads have no account)."""
        if not run.accounts:
            return
        pulled, run.accounts = run.accounts, {}
        companies = await self._store.get_links(ObjectType.ACCOUNT, sorted(set(pulled.values())))
        records = await self._store.get_links(run.obj, sorted(pulled))
        pairs = {
            rec.hub_id: company.hub_id
            for crm_id, account_id in pulled.items()
            if (rec := records.get(crm_id)) is not None
            and rec.hub_id
            and rec.deleted_side is None
            and (company := companies.get(account_id)) is not None
            and company.hub_id
            and company.deleted_side is None
        }
        if pairs:
            await run.lock.check()
            run.counts.associated += await self._hub.set_primary_companies(run.obj, pairs)

    async def _requeue(self, run: PullRun) -> None:
        """Queue the changes of direct batches whose outcome was not recorded."""
        changes = run.unsettled.left()
        if not changes:
            return
        try:
            await self._store.enqueue(changes)
        except StoreError as exc:
            # Nothing is lost: the cursor did not move, so the next pull reads them again.
            log.warning("requeue_failed", records=len(changes), error=str(exc))

    async def _release(self, entries: list[QueueEntry], owner: str) -> None:
        """Unfinished claims go back at once rather than waiting for their lease."""
        await self._store.release([e.id for e in entries], owner=owner)

    async def _send_batch(
        self,
        run: PullRun,
        entries: list[QueueEntry],
        owner: str,
        plans: list[HubWrite],
        lease: float,
        previous: asyncio.Task[None] | None,
        written: asyncio.Event,
    ) -> None:
        """Write a planned batch to the hub, then record its outcome after the previous
        batch recorded its own (so the store sees outcomes in claim order)."""
        try:
            sent: list[HubWrite] = []
            results: list[list[WriteResult]] = []
            # The leases are kept until the outcome is recorded: with several batches in
            # flight, the wait for the ones before can outlast a lease.
            async with keep_leases(self._store, entries, owner, lease) as leases:
                for plan in plans:
                    plan = await self._fenced(plan, leases)
                    if plan.items:
                        results.append(await self._planner.write(run, plan))
                        sent.append(plan)
                written.set()
                if previous is not None:
                    await previous
                for plan, res in zip(sent, results, strict=True):
                    outcomes = outcomes_of(plan, res)
                    await self._planner.settle_claimed(run, outcomes)
                    run.tally(outcomes)
        except (IntegrationError, StoreError, asyncio.CancelledError):
            await asyncio.shield(self._release(entries, owner))
            raise

    async def _fenced(self, plan: HubWrite, leases: Leases) -> HubWrite:
        """The fencing check before a hub write: records whose lease this claim lost (it
        stalled past the lease, another instance reclaimed them) are left to their new
        claimer, unwritten and unrecorded here."""
        ids = [e.id for e, *_ in plan.rows if isinstance(e, QueueEntry)]
        held = await leases.still_held(ids)
        if len(held) == len(ids):
            return plan
        lost = sorted(set(ids) - held)
        log.warning("lease_lost", direction="outbound", owner=leases.owner, entries=lost)
        metrics.LEASES_LOST.labels("outbound").inc(len(lost))
        return plan.keeping(held)


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
