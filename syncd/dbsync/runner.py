"""dbsync: import a MySQL table into one hub list — test (count only) and run.

A run reads the table in key order, page by page (memory stays one page however big the
table), maps each row to hub fields, and compares a hash of what it would send with what the
last run sent (``dbsync_rows``, keyed by normalised email): unchanged rows cost no API call.
Changed and new rows go to the hub as one upsert per batch (matched on email; the target list
and tags ride along as ``lists``/``tags``). A row is recorded only after the hub accepted it,
so a run killed half-way and started again upserts the rest by email and never creates a
contact twice. Two rows with one email make one contact: the first (lowest key) wins and the
later ones are reported as duplicates; earlier batches are recognised through the store (the
rows this run recorded carry its id), again without memory growing with the table.

Speed: a few hub write calls are in flight while the next rows are read, looked up and
mapped; accepted and seen rows are committed to the store many batches at a time (rows not
yet committed stay visible to later batches through the pass's bounded in-flight/buffered
sets). The stored hash also carries a fingerprint of the raw source values, so an unchanged
row is recognised without being mapped or hashed again.

Existence in the hub is looked up (``find_by_emails``) only for rows this dbsync has not
written before, and only when it matters: in test mode, with ``update_existing`` off (existing
contacts are left alone and remembered as such) and with ``send_last_broadcast`` (to know who
is new). Otherwise "created" comes from the hub's answer to the upsert.

``delete_missing`` acts only on contacts this dbsync wrote whose rows a successful pass did
not see, and refuses when the pass read fewer rows than the safety threshold of the previous
successful run. Contacts it added are deleted (as ActiveCampaign's database sync does), or
only taken off the list with ``delete_missing_action = "unsubscribe"``; contacts that were in
the hub before it wrote them are only ever taken off the list. A row taken off the list stays
stored, marked, so that when it comes back its contact is put back on the list (the hub keeps
an unsubscribed contact unsubscribed otherwise); a deleted contact's row is forgotten and
comes back as new.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

from syncd.config import DbsyncSettings
from syncd.dbsync.pass_state import (
    FOREIGN,
    PRIOR,
    REMOVED,
    Pass,
)
from syncd.dbsync.pipeline import UNSEEN_SCAN, DbsyncStore, RowPipeline
from syncd.dbsync.types import (
    DbsyncBusy,
    DbsyncReport,
    ProgressFn,
    RunCancelled,
    SourceFactory,
)
from syncd.errors import IntegrationError, StoreError
from syncd.logging import get_logger
from syncd.model import (
    ErrorCategory,
    ObjectType,
    RunKind,
    RunStatus,
    RunTrigger,
)
from syncd.store.leases import JobLock
from syncd.store.types import DbsyncRow
from syncd.vendors.protocols import HubConnector

log = get_logger("syncd.dbsync")


class DbsyncRunner(RowPipeline):
    """Tests and runs dbsyncs against one hub; one run per dbsync at a time."""

    def __init__(
        self,
        store: DbsyncStore,
        hub: HubConnector,
        source_factory: SourceFactory,
        *,
        owner: str = "syncd",
        lock_ttl: float = 60.0,
    ) -> None:
        self.store = store
        self.hub = hub
        self._sources = source_factory
        self.owner = owner
        self.lock_ttl = lock_ttl
        self._active: dict[str, int] = {}
        self._passes: dict[int, Pass] = {}  # passes going on here, by run id

    # -- public ------------------------------------------------------------------------------
    def running(self, name: str) -> int | None:
        """The id of this process's run of `name`, if one is going on."""
        return self._active.get(name)

    async def test(self, cfg: DbsyncSettings, *, exact: bool = False) -> DbsyncReport:
        """Begin and execute a test: count what a run would do; never writes to the hub."""
        run_id = await self.begin(cfg, RunTrigger.MANUAL, test=True)
        return await self.execute(cfg, run_id, test=True, exact=exact)

    def cancel(self, run_id: int, reason: str) -> bool:
        """Stop a pass going on in this process at its next page, slice or write call; it is
        recorded interrupted with `reason`. False if none is going on here."""
        p = self._passes.get(run_id)
        if p is None:
            return False
        p.cancelled = reason
        return True

    async def begin(self, cfg: DbsyncSettings, trigger: RunTrigger, *, test: bool = False) -> int:
        """Claim the dbsync (DbsyncBusy if a run or test is going on) and record a new run or
        test; its id. One at a time per dbsync: a test reads what a run is changing."""
        name = cfg.name
        if name in self._active:
            raise DbsyncBusy(name, self._active[name])
        self._active[name] = 0  # claimed while the store calls below are in flight
        try:
            if not await self.store.try_job_lock(self._lock(name), self.owner, self.lock_ttl):
                running = await self._running(name)
                raise DbsyncBusy(name, running)
            while (stale := await self._running(name)) is not None:
                # We hold the lock, so whoever ran it is gone (killed, or its lease ran out).
                await self.store.interrupt_run(
                    stale, error="stopped before its end: the process running it went away"
                )
            kind = RunKind.DBSYNC_TEST if test else RunKind.DBSYNC
            run_id = await self.store.start_run(kind, trigger, name=name, owner=self.owner)
        except BaseException as exc:
            self._active.pop(name, None)
            if not isinstance(exc, DbsyncBusy):
                with contextlib.suppress(StoreError):
                    await self.store.release_job_lock(self._lock(name), self.owner)
            raise
        self._active[name] = run_id
        return run_id

    async def execute(
        self,
        cfg: DbsyncSettings,
        run_id: int,
        progress: ProgressFn | None = None,
        *,
        test: bool = False,
        exact: bool = False,
    ) -> DbsyncReport:
        """Run a begun run or test to its end; the claim is released afterwards."""
        try:
            job = JobLock(self.store, self._lock(cfg.name), self.owner, self.lock_ttl)
            async with job.kept():
                return await self._execute(
                    cfg, run_id, test=test, exact=exact, progress=progress, job=job
                )
        finally:
            self._active.pop(cfg.name, None)

    async def run(
        self, cfg: DbsyncSettings, trigger: RunTrigger, progress: ProgressFn | None = None
    ) -> DbsyncReport:
        """Begin and execute a run."""
        run_id = await self.begin(cfg, trigger)
        return await self.execute(cfg, run_id, progress)

    # -- the pass ------------------------------------------------------------------------------
    @staticmethod
    def _lock(name: str) -> str:
        return f"dbsync:{name}"

    async def _running(self, name: str) -> int | None:
        for kind in (RunKind.DBSYNC, RunKind.DBSYNC_TEST):
            run = await self.store.running_run(kind, name)
            if run is not None:
                return run.id
        return None

    def _api_calls(self) -> int:
        calls = getattr(getattr(self.hub, "http", None), "calls", 0)
        return calls if isinstance(calls, int) else 0

    async def _execute(
        self,
        cfg: DbsyncSettings,
        run_id: int,
        *,
        test: bool,
        progress: ProgressFn | None,
        job: JobLock | None = None,
        exact: bool = False,
    ) -> DbsyncReport:
        p = Pass(cfg, run_id, test, job, exact=exact)
        self._passes[run_id] = p
        try:
            return await self._pass(p, progress)
        finally:
            self._passes.pop(run_id, None)

    async def _pass(self, p: Pass, progress: ProgressFn | None) -> DbsyncReport:
        cfg, run_id, test = p.cfg, p.run_id, p.test
        calls0 = self._api_calls()
        status, error, note = "succeeded", None, None
        try:
            try:
                await self._read_and_write(p, progress)
            finally:
                if test:
                    await self._drop_scratch(p)
            p.check_cancelled()  # everything the hub accepted is recorded by now
            if cfg.delete_missing:
                note = await self._delete_missing(p)
        except RunCancelled as exc:
            status, error = RunStatus.INTERRUPTED.value, str(exc)
            log.info("dbsync_cancelled", dbsync=cfg.name, run=run_id, reason=error)
        except (IntegrationError, StoreError) as exc:
            status, error = "failed", str(exc)
            log.warning("dbsync_failed", dbsync=cfg.name, run=run_id, error=error)
        except asyncio.CancelledError:
            status, error = RunStatus.INTERRUPTED.value, "cancelled (daemon stopping)"
            await self._finish(p, calls0, status, error)
            raise
        except Exception as exc:  # a bug must not leave the run marked running forever
            log.exception("dbsync_crashed", dbsync=cfg.name, run=run_id)
            status, error = "failed", f"internal error: {type(exc).__name__}"
        await self._finish(p, calls0, status, error or note)
        return DbsyncReport(
            cfg.name,
            run_id,
            "test" if test else "run",
            status,
            p.tally.as_dict(),
            tuple(p.examples),
            note,
            error,
        )

    async def _finish(self, p: Pass, calls0: int, status: str, message: str | None) -> None:
        p.tally.api_calls = self._api_calls() - calls0
        with contextlib.suppress(StoreError):
            await self._flush_failures(p, force=True)
        await asyncio.shield(
            self.store.finish_run(p.run_id, counts=p.tally.as_dict(), status=status, error=message)
        )
        log.info(
            "dbsync_finished", dbsync=p.cfg.name, run=p.run_id, status=status, **p.tally.as_dict()
        )

    # -- delete_missing ----------------------------------------------------------------------
    async def _previous_rows(self, name: str, run_id: int) -> int | None:
        for run in await self.store.list_runs(kind=RunKind.DBSYNC, name=name, limit=50):
            if run.id != run_id and run.status == "succeeded":
                return int(run.counts.get("rows_read", 0))
        return None

    async def _delete_missing(self, p: Pass) -> str | None:
        cfg, tally = p.cfg, p.tally
        prev = await self._previous_rows(cfg.name, p.run_id)
        if prev is not None and tally.rows_read < cfg.delete_safety_threshold * prev:
            tally.delete_refused = sum([len(ours) async for ours, _ in self._unseen(p)])
            return (
                f"delete_missing refused: this pass read {tally.rows_read} rows, fewer than "
                f"{cfg.delete_safety_threshold:.0%} of the {prev} rows of the previous "
                f"successful run; {tally.delete_refused} contacts were left on the list"
            )
        async for ours, unseen in self._unseen(p):
            p.check_cancelled()  # between pages: each page's calls and rows land together
            tally.deleted += len(ours)
            if p.test:
                continue
            kept = await self._take_away(p, ours)
            await self.store.upsert_dbsync_rows(list(kept.values()))
            await self.store.delete_dbsync_rows(
                cfg.name, [r.row_key for r in unseen if r.row_key not in kept]
            )
        return None

    async def _take_away(self, p: Pass, ours: list[DbsyncRow]) -> dict[str, DbsyncRow]:
        """Delete (or take off the list) the contacts of rows the pass did not meet; the
        stored rows to keep, by key: those taken off the list, marked REMOVED, and those
        whose delete failed (tried again next run)."""
        cfg, tally = p.cfg, p.tally
        ids = {r.row_key: r.hub_id for r in ours if r.hub_id}
        unknown = [r for r in ours if not r.hub_id]
        if unknown:
            found = await self.hub.find_by_emails([r.email for r in unknown])
            ids.update((r.row_key, found[r.email].id) for r in unknown if r.email in found)
            # No contact holds the email any more (deleted in the hub, or its email changed
            # there): the row is forgotten, and not counted as a contact this run deleted.
            tally.deleted -= sum(1 for r in unknown if r.email not in found)
        # Contacts this dbsync added are deleted, as ActiveCampaign's database sync deletes
        # contacts no longer in the source (http://www.activecampaign.com/help/how-to-use-
        # database-sync/), or by choice only taken off the list; contacts that were in the
        # hub before it are only ever taken off the list. HubSpot archives: restorable for
        # 90 days (https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/
        # contacts/batch/delete-contacts).
        deleting = cfg.delete_missing_action == "delete"
        doomed = [r for r in ours if r.row_key in ids and deleting and not _prior(r)]
        unlist = [r for r in ours if r.row_key in ids and not (deleting and not _prior(r))]
        kept: dict[str, DbsyncRow] = {}
        if doomed:
            await p.fence()
            tally.write_calls += 1
            results = await self.hub.delete(ObjectType.CONTACT, [ids[r.row_key] for r in doomed])
            for r, res in zip(doomed, results, strict=True):
                if not res.ok:
                    tally.deleted -= 1
                    reason = f"hub refused to delete the contact: {res.error_message}"
                    category = res.error_category or ErrorCategory.REJECTED
                    p.fail(r.row_key, (), reason, category, r.email)
                    kept[r.row_key] = r._replace(hub_id=ids[r.row_key])
        if unlist:
            await p.fence()
            tally.write_calls += 1
            removed = set(
                await self.hub.remove_from_list(cfg.list, [ids[r.row_key] for r in unlist])
            )
            for r in unlist:
                if ids[r.row_key] in removed:  # with its id: putting it back needs it
                    kept[r.row_key] = r._replace(
                        hub_id=ids[r.row_key], content_hash=REMOVED + r.content_hash
                    )
        return kept

    async def _unseen(self, p: Pass) -> AsyncIterator[tuple[list[DbsyncRow], list[DbsyncRow]]]:
        """Stored rows of this dbsync the pass did not meet, a call's worth at a time: those
        whose contacts it wrote (not those of contacts that were in the hub before with
        update_existing off, nor those it already took off the list), and all of them but
        those it took off the list (kept until their row comes back)."""
        page = max(p.cfg.batch_size, 100)
        # Test mode wrote nothing: every stored row has an older run; `seen` has those it met.
        upto = sys.maxsize if p.test else p.run_id
        after = ""
        while True:
            rows = await self.store.dbsync_rows_not_seen(
                p.cfg.name, upto, after_key=after, limit=UNSEEN_SCAN
            )
            if not rows:
                return
            after = rows[-1].row_key
            unseen = [
                r for r in rows if r.id not in p.seen and not r.content_hash.startswith(REMOVED)
            ]
            for i in range(0, len(unseen), page):
                part = unseen[i : i + page]
                yield [r for r in part if not r.content_hash.startswith(FOREIGN)], part

    async def _drop_scratch(self, p: Pass) -> None:
        while True:
            rows = await self.store.dbsync_rows_not_seen(p.scratch, sys.maxsize, limit=1000)
            if not rows:
                return
            await self.store.delete_dbsync_rows(p.scratch, [r.row_key for r in rows])


def _prior(row: DbsyncRow) -> bool:
    """Whether the row's contact was in the hub before this dbsync wrote it."""
    return row.content_hash.startswith(PRIOR)
