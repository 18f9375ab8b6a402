"""The rows of a dbsync pass on their way: read in pages, looked up in the store, mapped,
compared by hash, written to the hub a few calls at a time, recorded in batches.

See `syncd.dbsync.runner` for what a run promises; this is how its rows travel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from syncd.dbsync.hub_writes import HubWrites
from syncd.dbsync.pass_state import (
    FOREIGN,
    PRIOR,
    REMOVED,
    SOURCE_MARK,
    Lookup,
    Pass,
    Raws,
    SliceView,
    Write,
    first_error,
)
from syncd.dbsync.rows import (
    MappedRow,
    RowPlan,
    build_plan,
    fingerprint_prefix,
    map_row,
    peek_rows,
    row_hasher,
    source_fingerprint,
)
from syncd.dbsync.types import (
    DbsyncSource,
    ProgressFn,
    SourceFactory,
)
from syncd.errors import StoreError
from syncd.model import (
    ErrorCategory,
    ObjectType,
)
from syncd.store.protocols import DbsyncLedger, JobLockStore, RunStore
from syncd.store.types import DbsyncRow
from syncd.vendors.protocols import HubConnector


class DbsyncStore(DbsyncLedger, RunStore, JobLockStore, Protocol):
    """What a dbsync run records: its rows, its run and failures, and its job lock."""


PAGE = 5000  # source rows per read
LOOKUP_CALLS = 8  # write calls' worth of rows per store lookup
MAP_CALLS = 2  # write calls' worth of rows mapped before their calls start (the loop stays free)
FLUSH_CALLS = 80  # write calls' worth of recorded or seen rows per store commit (an fsync)
# Hub write calls at once. A hub may take seconds to answer one (an ActiveCampaign bulk import
# is processed in the background, about 5 s), so throughput is calls in flight / latency
# until the hub's own rate limit binds: AC takes 100 imports a minute, which at 5-7 s each
# needs 9-12 in flight. 16 reaches the limit with room, and bounds the rows held in memory
# to 16 calls' worth (4,000 at the default batch of 250).
IN_FLIGHT = 16
LOOKAHEAD = 4  # slices whose store lookup is issued before they are mapped
FAILURE_FLUSH = 500
UNSEEN_SCAN = 5000  # stored rows read per query when looking for rows a pass did not meet


class RowPipeline(HubWrites):
    """Reads, maps and writes a pass's rows; the runner around it owns runs and locks."""

    store: DbsyncStore
    hub: HubConnector
    _sources: SourceFactory

    async def _flush_failures(self, p: Pass, *, force: bool = False) -> None:
        if p.failures and (force or len(p.failures) >= FAILURE_FLUSH):
            batch, p.failures = p.failures, []
            await self.store.add_run_failures(batch)

    async def _read_and_write(self, p: Pass, progress: ProgressFn | None) -> None:
        cfg = p.cfg
        source = self._sources(cfg)
        try:
            columns = await source.columns(cfg.table)
            plan = build_plan(cfg, columns, await self.hub.describe(ObjectType.CONTACT))
            async with source.snapshot():
                p.tally.total = await source.count(cfg.table, cfg.rules)
                if progress is not None:
                    progress(0, p.tally.total)
                p.prefix = fingerprint_prefix(plan)
                p.hasher = row_hasher(plan)
                queue: asyncio.Queue[Raws | None] = asyncio.Queue(maxsize=4)
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._consume(p, plan, queue))
                        await self._produce(p, plan, source, queue, progress)
                except BaseExceptionGroup as group:
                    raise first_error(group) from None
        finally:
            await source.close()

    async def _produce(
        self,
        p: Pass,
        plan: RowPlan,
        source: DbsyncSource,
        queue: asyncio.Queue[Raws | None],
        progress: ProgressFn | None,
    ) -> None:
        """Read pages and hand them on in lookup-sized slices; the queue lets the next page
        be read while the consumer maps the previous one."""
        cfg, tally = p.cfg, p.tally
        per_lookup = cfg.batch_size * LOOKUP_CALLS
        stream = source.stream_rows(
            cfg.table,
            plan.columns,
            cfg.rules,
            key_column=plan.key_column,
            batch_size=max(cfg.batch_size, PAGE),
        )
        async for rows in stream:
            if p.cancelled is not None:
                break  # read no more; the consumer lets the calls in flight land
            tally.rows_read += len(rows)
            for i in range(0, len(rows), per_lookup):
                await queue.put(list(rows[i : i + per_lookup]))
            if progress is not None:
                progress(tally.rows_read, tally.total)
        await queue.put(None)

    async def _consume(self, p: Pass, plan: RowPlan, queue: asyncio.Queue[Raws | None]) -> None:
        limit = asyncio.Semaphore(IN_FLIGHT)
        try:
            async with asyncio.TaskGroup() as tasks:
                ahead: deque[Lookup] = deque()
                done = False
                while True:
                    # Keep the next slice's store lookup running while this one is mapped
                    # (the store works on its own thread or server).
                    while not done and len(ahead) < LOOKAHEAD:
                        if ahead and queue.empty():
                            break
                        raws = await queue.get()
                        if raws is None:
                            done = True
                        else:
                            ahead.append(self._look_up(p, plan, raws, tasks))
                    if p.cancelled is not None:
                        # Cancelled: start no more hub calls; those in flight land and are
                        # recorded below, and the producer is let finish its last put.
                        p.unsent = []
                        ahead.clear()
                        while not done:
                            done = await queue.get() is None
                        break
                    if not ahead:
                        await self._send(p, plan, tasks, limit, final=True)
                        break
                    await self._process(p, plan, ahead.popleft(), tasks, limit)
                    await self._flush_failures(p)
                    if len(p.buffered) >= FLUSH_CALLS * p.cfg.batch_size:
                        await self._commit_rows(p, tasks)
        except Exception:
            # What the hub accepted before the failure is kept, so a rerun need not resend it.
            with contextlib.suppress(StoreError):
                await self._commit_rows(p, None)
            raise
        await self._commit_rows(p, None)

    def _look_up(self, p: Pass, plan: RowPlan, raws: Raws, tasks: asyncio.TaskGroup) -> Lookup:
        peeks = peek_rows(plan, raws)
        emails = list(dict.fromkeys(e for _, _, e in peeks if e))
        mark = p.begin_lookup()
        stored = tasks.create_task(self.store.dbsync_rows(p.cfg.name, emails)) if emails else None
        return Lookup(raws, peeks, mark, stored)

    async def _commit_rows(self, p: Pass, tasks: asyncio.TaskGroup | None) -> None:
        """Commit the recorded and seen rows after the commit before them; in the background
        when `tasks` is given (the next slices are mapped meanwhile), else now."""
        if p.test or not p.record:
            return
        rows, p.record = p.record, []
        number = p.begin_commit()
        before = p.commit_task

        async def commit() -> None:
            # Commits land in order. Once the task group is over every task is done: one
            # that failed or was cancelled lost only its own rows (resent by email next run).
            try:
                if before is not None and not before.done():
                    await before
                await self.store.upsert_dbsync_rows(rows)
            except BaseException:
                # Failed, or cancelled with the pass: handed back, so the last commit of a
                # failing pass still records what the hub accepted.
                p.record[:0] = rows
                raise
            p.committed = number

        if tasks is None:
            p.commit_task = None
            await commit()
        else:
            p.commit_task = tasks.create_task(commit())

    def _map_batch(
        self,
        p: Pass,
        plan: RowPlan,
        part: Iterable[tuple[Sequence[Any], tuple[str, str, str]]],
        view: SliceView,
    ) -> list[tuple[MappedRow, str]]:
        """Map a part of a slice in key order: first rows per email with their source
        fingerprints. A run's unchanged row is known by its stored source fingerprint and
        never mapped; later rows of an email in the slice are duplicates."""
        stored, met, firsts = view.stored, view.met, view.firsts
        rows: list[tuple[MappedRow, str]] = []
        # The unchanged-row test runs for every row of every pass: kept inline and local.
        prefix = p.prefix
        foreign_ok = not p.cfg.update_existing
        unchanged = 0
        for raw, peek in part:
            key, _, email = peek
            s = stored.get(email)
            fp = ""
            if s is not None and email not in firsts:
                fp = prefix + raw[-1]
                # Unchanged: written from exactly these source values, and nothing of this
                # run has met the email yet (else a duplicate, reported by the slow path).
                digest, _, written_from = s.content_hash.partition(SOURCE_MARK)
                if (
                    written_from == fp
                    and (foreign_ok or not digest.startswith(FOREIGN))
                    and not digest.startswith(REMOVED)
                    and not p.met(email, s, met)
                ):
                    firsts[email] = key
                    unchanged += 1
                    continue
            row = map_row(plan, raw, peek)
            if row.problems:
                first = row.problems[0]
                for prob in row.problems:
                    p.fail(
                        row.key,
                        prob.columns,
                        prob.reason,
                        ErrorCategory.VALIDATION,
                        row.email or None,
                        counted=prob is first,
                    )
                continue
            head = firsts.get(row.email)
            if head is not None:
                self._duplicate(p, plan, row, f"also in row {head}")
                continue
            firsts[row.email] = row.key
            rows.append((row, fp or source_fingerprint(prefix, raw)))
        p.tally.unchanged += unchanged
        return rows

    async def _drop_seen(
        self,
        p: Pass,
        plan: RowPlan,
        rows: list[tuple[MappedRow, str]],
        view: SliceView,
    ) -> list[tuple[MappedRow, str]]:
        """Rows whose email no earlier batch of this pass had; the others are duplicates.

        Earlier batches are known from the store (rows this run wrote carry its id, stored
        rows it met are in `Pass.seen`; test mode keeps a scratch set for the emails it would
        have written new) and, until their next commit, from the pass's in-flight and
        buffered emails.
        """
        stored, met = view.stored, view.met
        seen = {r.email for r, _ in rows if p.met(r.email, stored.get(r.email), met)}
        if p.test:
            fresh = [r.email for r, _ in rows if r.email not in stored]
            if fresh:
                known = set(await self.store.dbsync_rows(p.scratch, fresh))
                seen |= known
                await self.store.upsert_dbsync_rows(
                    [
                        DbsyncRow(p.scratch, e, e, None, "", p.run_id)
                        for e in fresh
                        if e not in known
                    ]
                )
        out = []
        for row, fp in rows:
            if row.email in seen:
                self._duplicate(p, plan, row, "already synced from an earlier row of this run")
            else:
                out.append((row, fp))
        return out

    @staticmethod
    def _duplicate(p: Pass, plan: RowPlan, row: MappedRow, where: str) -> None:
        p.tally.duplicates += 1
        p.fail(
            row.key,
            (plan.email_column,),
            f"duplicate row: email {row.email!r} {where}; the first row wins",
            ErrorCategory.DUPLICATE,
            row.email,
            counted=False,
        )

    async def _process(
        self,
        p: Pass,
        plan: RowPlan,
        look: Lookup,
        writers: asyncio.TaskGroup,
        limit: asyncio.Semaphore,
    ) -> None:
        """Map, compare and send one looked-up slice, a part at a time: each part's write
        calls start before the next part is mapped, so the calls in flight (several round
        trips each) keep moving while the slice is worked through."""
        stored = await look.stored if look.stored is not None else {}
        view = SliceView(stored, p.since(look.mark))
        rows = list(zip(look.raws, look.peeks, strict=True))
        step = p.cfg.batch_size * MAP_CALLS
        for start in range(0, len(rows), step):
            await self._process_part(p, plan, rows[start : start + step], view, writers, limit)
        # Every stored row whose email this slice has is met now (later rows of the email
        # are duplicates); marked after the slice's own checks.
        for known in stored.values():
            p.seen.add(known.id)

    async def _process_part(
        self,
        p: Pass,
        plan: RowPlan,
        part: list[tuple[Sequence[Any], tuple[str, str, str]]],
        view: SliceView,
        writers: asyncio.TaskGroup,
        limit: asyncio.Semaphore,
    ) -> None:
        cfg, tally, stored = p.cfg, p.tally, view.stored
        mapped = self._map_batch(p, plan, part, view)
        rows = await self._drop_seen(p, plan, mapped, view)
        writes: list[Write] = []
        keep: list[DbsyncRow] = []  # recorded without a hub write
        new: list[tuple[MappedRow, str]] = []
        for row, fp in rows:
            digest = p.hasher(row)
            stamp = f"{digest}{SOURCE_MARK}{fp}"
            s = stored.get(row.email)
            if s is None:
                new.append((row, stamp))
                continue
            if s.content_hash.startswith(REMOVED):
                # Back after delete_missing took it off the list: synced again as new.
                prior = PRIOR if s.content_hash.startswith(REMOVED + PRIOR) else ""
                writes.append(Write(row, prior + stamp, s.hub_id, "return"))
                continue
            written = s.content_hash.partition(SOURCE_MARK)[0]
            if written.startswith(FOREIGN):
                if cfg.update_existing:  # it was in the hub before this dbsync
                    writes.append(Write(row, PRIOR + stamp, s.hub_id, "update"))
                elif written == FOREIGN + digest:
                    tally.unchanged += 1
                    self._unchanged(p, row, s, FOREIGN + stamp, keep)
                else:
                    tally.skipped_existing += 1
                    keep.append(self._dbrow(p, row, s.hub_id, FOREIGN + stamp))
                continue
            if written.startswith(PRIOR):
                written, stamp = written[len(PRIOR) :], PRIOR + stamp
            if written == digest:
                tally.unchanged += 1
                self._unchanged(p, row, s, stamp, keep)
            else:
                writes.append(Write(row, stamp, s.hub_id, "update"))
        tally.new += len(new)
        if p.test and not p.exact:
            new = []  # counted as new: whether each is created or updated needs a lookup
        if new:
            if p.exact or not cfg.update_existing or cfg.send_last_broadcast:
                found = await self.hub.find_by_emails([r.email for r, _ in new])
                for row, stamp in new:
                    rec = found.get(row.email)
                    if rec is None:
                        writes.append(Write(row, stamp, None, "create"))
                    elif cfg.update_existing:
                        writes.append(Write(row, PRIOR + stamp, rec.id, "update"))
                    else:
                        tally.skipped_existing += 1
                        keep.append(self._dbrow(p, row, rec.id, FOREIGN + stamp))
            else:
                writes.extend(Write(row, stamp, None, "upsert") for row, stamp in new)
        if p.test:
            for w in writes:
                if w.kind in ("create", "return"):
                    tally.created += 1
                else:
                    tally.updated += 1
            return
        p.record += keep
        p.buffered.update(r.email for r in keep)
        p.unsent += writes
        p.inflight.update(w.row.email for w in writes)
        await self._send(p, plan, writers, limit, final=False)

    def _unchanged(
        self,
        p: Pass,
        row: MappedRow,
        s: DbsyncRow,
        stamp: str,
        keep: list[DbsyncRow],
    ) -> None:
        """An unchanged row costs no API call; a stored hash without this source fingerprint
        is rewritten (store only) so the next run can skip mapping the row."""
        if s.content_hash != stamp:
            keep.append(self._dbrow(p, row, s.hub_id, stamp))
