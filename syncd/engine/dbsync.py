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

Existence in the hub is looked up (``find_by_emails``) only for rows this dbsync has not
written before, and only when it matters: in test mode, with ``update_existing`` off (existing
contacts are left alone and remembered as such) and with ``send_last_broadcast`` (to know who
is new). Otherwise "created" comes from the hub's answer to the upsert.

``delete_missing`` takes off the list only contacts this dbsync wrote and whose rows were not
seen by a successful pass, and refuses when the pass read fewer rows than the safety threshold
of the previous successful run.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from syncd.config import DbsyncSettings
from syncd.connectors.base import HubConnector
from syncd.engine.dbsync_rows import (
    MappedRow,
    RowPlan,
    build_plan,
    map_row,
    payload_size,
    row_hash,
)
from syncd.engine.dbsync_types import (
    DbsyncBusy,
    DbsyncReport,
    DbsyncSource,
    FailureExample,
    ProgressFn,
    SourceFactory,
    Tally,
)
from syncd.errors import IntegrationError, StoreError
from syncd.logging import get_logger
from syncd.model import ErrorCategory, ObjectType, RunKind, RunTrigger, WriteItem, WriteOp
from syncd.store.base import DbsyncRow, RunFailure, StateStore

log = get_logger("syncd.dbsync")

# Marks a row whose email already belonged to a hub contact this dbsync did not write
# (update_existing off): remembered so it costs nothing next time, never deleted from the list.
FOREIGN = "x:"
PAGE = 5000  # source rows per read
LOOKUP_CALLS = 8  # write calls' worth of rows per store lookup
FLUSH_CALLS = 20  # write calls' worth of recorded or seen rows per store commit
IN_FLIGHT = 3  # hub write calls at once: rows are mapped and looked up while the hub works
MAX_BODY = 300_000  # bytes per write call; AC refuses bulk bodies over 400 kB
FAILURE_FLUSH = 500
EXAMPLES = 10


@dataclass
class _Batch:
    rows: list[MappedRow] = field(default_factory=list)
    failed_emails: list[str] = field(default_factory=list)


@dataclass
class _Write:
    row: MappedRow
    digest: str
    hub_id: str | None
    kind: str  # create | update | upsert (existence unknown)
    stored: bool


class _Pass:
    """State of one test or run pass."""

    def __init__(self, cfg: DbsyncSettings, run_id: int, test: bool) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.test = test
        self.tally = Tally()
        self.failures: list[RunFailure] = []
        self.examples: list[FailureExample] = []
        self.seen_ours = 0  # test mode: stored rows of ours met by the pass
        # Test mode remembers the emails it met here (no real row may be touched).
        self.scratch = f"~test{run_id}:{cfg.name}"[:64]
        # Rows of this run not yet committed to the store, so later batches still see them:
        # emails in hub write calls not yet answered, and emails recorded or seen since the
        # last commit (with what to commit). Bounded by IN_FLIGHT and FLUSH_CALLS.
        self.inflight: set[str] = set()
        self.buffered: set[str] = set()
        self.record: list[DbsyncRow] = []
        self.seen_keys: list[str] = []

    def met(self, email: str) -> bool:
        """Whether an earlier row of this run had `email` and is not in the store yet."""
        return email in self.inflight or email in self.buffered

    def fail(
        self,
        key: str,
        columns: tuple[str, ...],
        reason: str,
        category: ErrorCategory,
        email: str | None,
        *,
        counted: bool = True,
    ) -> None:
        if counted:
            self.tally.failed += 1
            if len(self.examples) < EXAMPLES:
                self.examples.append(FailureExample(key, columns, reason))
        self.failures.append(RunFailure(self.run_id, key[:255], columns, reason, category, email))


class DbsyncRunner:
    """Tests and runs dbsyncs against one hub; one run per dbsync at a time."""

    def __init__(
        self,
        store: StateStore,
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

    # -- public ------------------------------------------------------------------------------
    def running(self, name: str) -> int | None:
        """The id of this process's run of `name`, if one is going on."""
        return self._active.get(name)

    async def test(self, cfg: DbsyncSettings) -> DbsyncReport:
        """Read the source and count what a run would do; never writes to the hub."""
        run_id = await self.store.start_run(
            RunKind.DBSYNC_TEST, RunTrigger.MANUAL, name=cfg.name, owner=self.owner
        )
        return await self._execute(cfg, run_id, test=True, progress=None)

    async def begin(self, cfg: DbsyncSettings, trigger: RunTrigger) -> int:
        """Claim the dbsync (DbsyncBusy if a run is going on) and record a new run; its id."""
        name = cfg.name
        if name in self._active:
            raise DbsyncBusy(name, self._active[name])
        self._active[name] = 0  # claimed while the store calls below are in flight
        try:
            if not await self.store.try_job_lock(self._lock(name), self.owner, self.lock_ttl):
                running = await self.store.running_run(RunKind.DBSYNC, name)
                raise DbsyncBusy(name, running.id if running else None)
            stale = await self.store.running_run(RunKind.DBSYNC, name)
            if stale is not None:
                # We hold the lock, so whoever ran it is gone (killed, or its lease ran out).
                await self.store.finish_run(
                    stale.id,
                    counts=stale.counts,
                    status="failed",
                    error="interrupted: the process running it stopped before the end",
                )
            run_id = await self.store.start_run(
                RunKind.DBSYNC, trigger, name=name, owner=self.owner
            )
        except BaseException as exc:
            self._active.pop(name, None)
            if not isinstance(exc, DbsyncBusy):
                with contextlib.suppress(StoreError):
                    await self.store.release_job_lock(self._lock(name), self.owner)
            raise
        self._active[name] = run_id
        return run_id

    async def execute(
        self, cfg: DbsyncSettings, run_id: int, progress: ProgressFn | None = None
    ) -> DbsyncReport:
        """Run a begun run to its end; the claim is released afterwards."""
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(cfg.name))
        try:
            return await self._execute(cfg, run_id, test=False, progress=progress)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._active.pop(cfg.name, None)
            with contextlib.suppress(StoreError):
                await self.store.release_job_lock(self._lock(cfg.name), self.owner)

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

    async def _heartbeat(self, name: str) -> None:
        while True:
            await asyncio.sleep(max(self.lock_ttl / 3, 0.05))
            with contextlib.suppress(StoreError):
                await self.store.try_job_lock(self._lock(name), self.owner, self.lock_ttl)

    def _api_calls(self) -> int:
        calls = getattr(getattr(self.hub, "http", None), "calls", 0)
        return calls if isinstance(calls, int) else 0

    async def _execute(
        self, cfg: DbsyncSettings, run_id: int, *, test: bool, progress: ProgressFn | None
    ) -> DbsyncReport:
        p = _Pass(cfg, run_id, test)
        calls0 = self._api_calls()
        status, error, note = "succeeded", None, None
        try:
            try:
                await self._read_and_write(p, progress)
            finally:
                if test:
                    await self._drop_scratch(p)
            if cfg.delete_missing:
                note = await self._delete_missing(p)
        except (IntegrationError, StoreError) as exc:
            status, error = "failed", str(exc)
            log.warning("dbsync_failed", dbsync=cfg.name, run=run_id, error=error)
        except asyncio.CancelledError:
            status, error = "failed", "cancelled (daemon stopping)"
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

    async def _finish(self, p: _Pass, calls0: int, status: str, message: str | None) -> None:
        p.tally.api_calls = self._api_calls() - calls0
        with contextlib.suppress(StoreError):
            await self._flush_failures(p, force=True)
        await asyncio.shield(
            self.store.finish_run(p.run_id, counts=p.tally.as_dict(), status=status, error=message)
        )
        log.info(
            "dbsync_finished", dbsync=p.cfg.name, run=p.run_id, status=status, **p.tally.as_dict()
        )

    async def _flush_failures(self, p: _Pass, *, force: bool = False) -> None:
        if p.failures and (force or len(p.failures) >= FAILURE_FLUSH):
            batch, p.failures = p.failures, []
            await self.store.add_run_failures(batch)

    async def _read_and_write(self, p: _Pass, progress: ProgressFn | None) -> None:
        cfg = p.cfg
        source = self._sources(cfg)
        try:
            columns = await source.columns(cfg.table)
            plan = build_plan(cfg, columns, await self.hub.describe(ObjectType.CONTACT))
            async with source.snapshot():
                p.tally.total = await source.count(cfg.table, cfg.rules)
                if progress is not None:
                    progress(0, p.tally.total)
                queue: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=2)
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._consume(p, plan, queue))
                        await self._produce(p, plan, source, queue, progress)
                except BaseExceptionGroup as group:
                    raise _first(group) from None
        finally:
            await source.close()

    async def _produce(
        self,
        p: _Pass,
        plan: RowPlan,
        source: DbsyncSource,
        queue: asyncio.Queue[_Batch | None],
        progress: ProgressFn | None,
    ) -> None:
        cfg, tally = p.cfg, p.tally
        batch = _Batch()
        stream = source.stream_rows(
            cfg.table,
            plan.columns,
            cfg.rules,
            key_column=plan.key_column,
            batch_size=max(cfg.batch_size, PAGE),
        )
        async for rows in stream:
            for raw in rows:
                tally.rows_read += 1
                row = map_row(plan, raw)
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
                    if row.email:
                        batch.failed_emails.append(row.email)
                    continue
                batch.rows.append(row)
                if len(batch.rows) >= cfg.batch_size * LOOKUP_CALLS:
                    await queue.put(batch)
                    batch = _Batch()
            if progress is not None:
                progress(tally.rows_read, tally.total)
        if batch.rows or batch.failed_emails:
            await queue.put(batch)
        await queue.put(None)

    async def _consume(self, p: _Pass, plan: RowPlan, queue: asyncio.Queue[_Batch | None]) -> None:
        limit = asyncio.Semaphore(IN_FLIGHT)
        try:
            async with asyncio.TaskGroup() as writers:
                while True:
                    batch = await queue.get()
                    if batch is None:
                        break
                    await self._process(p, plan, batch, writers, limit)
                    await self._flush_failures(p)
                    if len(p.buffered) >= FLUSH_CALLS * p.cfg.batch_size:
                        await self._flush_rows(p)
        except Exception:
            # What the hub accepted before the failure is kept, so a rerun need not resend it.
            with contextlib.suppress(StoreError):
                await self._flush_rows(p)
            raise
        await self._flush_rows(p)

    async def _flush_rows(self, p: _Pass) -> None:
        """Commit the recorded and seen rows; only the consumer calls it (no lookup races)."""
        if p.test or not (p.record or p.seen_keys):
            return
        rows, seen = p.record, p.seen_keys
        p.record, p.seen_keys, p.buffered = [], [], set()
        await self.store.record_dbsync_rows(p.cfg.name, p.run_id, rows, seen)

    async def _dedupe(
        self, p: _Pass, plan: RowPlan, rows: list[MappedRow], stored: dict[str, DbsyncRow]
    ) -> list[MappedRow]:
        """Rows whose email no earlier row of this pass had; the others are duplicates.

        Earlier batches are known from the store (rows this run wrote or touched carry its
        id; test mode keeps a scratch set) and, until their next commit, from the pass's
        in-flight and buffered emails, so memory does not grow with the table.
        """
        firsts: dict[str, MappedRow] = {}
        for row in rows:
            head = firsts.get(row.email)
            if head is None:
                firsts[row.email] = row
            else:
                self._duplicate(p, plan, row, f"also in row {head.key}")
        seen: set[str]
        if p.test:
            seen = set(await self.store.dbsync_rows(p.scratch, list(firsts)))
            await self.store.upsert_dbsync_rows(
                [DbsyncRow(p.scratch, e, e, None, "", p.run_id) for e in firsts if e not in seen]
            )
        else:
            seen = {e for e in firsts if p.met(e) or (e in stored and stored[e].run_id == p.run_id)}
        out = []
        for email, row in firsts.items():
            if email in seen:
                self._duplicate(p, plan, row, "already synced from an earlier row of this run")
            else:
                out.append(row)
        return out

    @staticmethod
    def _duplicate(p: _Pass, plan: RowPlan, row: MappedRow, where: str) -> None:
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
        p: _Pass,
        plan: RowPlan,
        batch: _Batch,
        writers: asyncio.TaskGroup,
        limit: asyncio.Semaphore,
    ) -> None:
        cfg, tally, name = p.cfg, p.tally, p.cfg.name
        keys = list(dict.fromkeys([r.email for r in batch.rows] + batch.failed_emails))
        stored = await self.store.dbsync_rows(name, keys) if keys else {}
        batch.rows = await self._dedupe(p, plan, batch.rows, stored)
        touch = [e for e in batch.failed_emails if e in stored]
        if p.test:
            p.seen_ours += sum(1 for e in touch if not stored[e].content_hash.startswith(FOREIGN))
        writes: list[_Write] = []
        foreign: list[DbsyncRow] = []
        new: list[tuple[MappedRow, str]] = []
        for row in batch.rows:
            digest = row_hash(row, plan.list_id)
            s = stored.get(row.email)
            if s is None:
                new.append((row, digest))
                continue
            if s.content_hash.startswith(FOREIGN):
                if cfg.update_existing:
                    writes.append(_Write(row, digest, s.hub_id, "update", True))
                elif s.content_hash == FOREIGN + digest:
                    tally.unchanged += 1
                    touch.append(row.email)
                else:
                    tally.skipped_existing += 1
                    foreign.append(self._dbrow(p, row, s.hub_id, FOREIGN + digest))
                continue
            if p.test:
                p.seen_ours += 1
            if s.content_hash == digest:
                tally.unchanged += 1
                touch.append(row.email)
            else:
                writes.append(_Write(row, digest, s.hub_id, "update", True))
        if new:
            if p.test or not cfg.update_existing or cfg.send_last_broadcast:
                found = await self.hub.find_by_emails([r.email for r, _ in new])
                for row, digest in new:
                    rec = found.get(row.email)
                    if rec is None:
                        writes.append(_Write(row, digest, None, "create", False))
                    elif cfg.update_existing:
                        writes.append(_Write(row, digest, rec.id, "update", False))
                    else:
                        tally.skipped_existing += 1
                        foreign.append(self._dbrow(p, row, rec.id, FOREIGN + digest))
            else:
                writes.extend(_Write(row, digest, None, "upsert", False) for row, digest in new)
        if p.test:
            for w in writes:
                if w.kind == "create":
                    tally.created += 1
                else:
                    tally.updated += 1
            return
        p.seen_keys += touch
        p.record += foreign
        p.buffered.update(touch)
        p.buffered.update(r.email for r in foreign)
        for chunk in _chunks(writes, cfg.batch_size):
            await limit.acquire()
            p.inflight.update(w.row.email for w in chunk)
            writers.create_task(self._write_call(p, plan, chunk, limit))

    async def _write_call(
        self, p: _Pass, plan: RowPlan, chunk: list[_Write], limit: asyncio.Semaphore
    ) -> None:
        """One hub write call; accepted rows are buffered for the next store commit."""
        try:
            touch: list[str] = []
            done, created_ids = await self._write(p, plan, chunk, touch)
            emails = [w.row.email for w in chunk]
            # Buffered before leaving inflight, with no await between: never unseen.
            p.record += done
            p.seen_keys += touch
            p.buffered.update(emails)
            p.inflight.difference_update(emails)
            if created_ids and p.cfg.send_last_broadcast:
                p.tally.write_calls += 1
                await self.hub.send_last_broadcast(p.cfg.list, created_ids)
        finally:
            limit.release()

    def _dbrow(self, p: _Pass, row: MappedRow, hub_id: str | None, digest: str) -> DbsyncRow:
        return DbsyncRow(p.cfg.name, row.email, row.email, hub_id, digest, p.run_id)

    async def _write(
        self, p: _Pass, plan: RowPlan, chunk: list[_Write], touch: list[str]
    ) -> tuple[list[DbsyncRow], list[str]]:
        done: list[DbsyncRow] = []
        created_ids: list[str] = []
        if chunk:
            items = [WriteItem(self._fields(plan, w.row), w.hub_id) for w in chunk]
            p.tally.write_calls += 1
            results = await self.hub.write(
                ObjectType.CONTACT, WriteOp.UPSERT, items, match_field="email"
            )
            for w, res in zip(chunk, results, strict=True):
                if not res.ok:
                    cols = (plan.email_column, *(c for _, c, _ in plan.fields))
                    p.fail(
                        w.row.key,
                        cols,
                        f"hub rejected the contact: {res.error_message or res.error_code}",
                        res.error_category or ErrorCategory.REJECTED,
                        w.row.email,
                    )
                    if w.stored:
                        touch.append(w.row.email)
                    continue
                created = w.kind == "create" or (w.kind == "upsert" and res.created)
                if created:
                    p.tally.created += 1
                    if res.id:
                        created_ids.append(res.id)
                else:
                    p.tally.updated += 1
                done.append(self._dbrow(p, w.row, res.id or w.hub_id, w.digest))
        return done, created_ids

    @staticmethod
    def _fields(plan: RowPlan, row: MappedRow) -> dict[str, object]:
        out: dict[str, object] = dict(row.fields)
        out["lists"] = [plan.list_id]
        if row.tags:
            out["tags"] = list(row.tags)
        return out

    # -- delete_missing ----------------------------------------------------------------------
    async def _previous_rows(self, name: str, run_id: int) -> int | None:
        for run in await self.store.list_runs(kind=RunKind.DBSYNC, name=name, limit=50):
            if run.id != run_id and run.status == "succeeded":
                return int(run.counts.get("rows_read", 0))
        return None

    async def _delete_missing(self, p: _Pass) -> str | None:
        cfg, tally = p.cfg, p.tally
        page = max(cfg.batch_size, 100)
        # Test mode touched nothing: every stored row looks unseen; subtract those it met.
        upto = sys.maxsize if p.test else p.run_id
        prev = await self._previous_rows(cfg.name, p.run_id)
        if prev is not None and tally.rows_read < cfg.delete_safety_threshold * prev:
            pending = await self._count_unseen(cfg.name, upto, page) - p.seen_ours
            tally.delete_refused = max(pending, 0)
            return (
                f"delete_missing refused: this pass read {tally.rows_read} rows, fewer than "
                f"{cfg.delete_safety_threshold:.0%} of the {prev} rows of the previous "
                f"successful run; {tally.delete_refused} contacts were left on the list"
            )
        if p.test:
            tally.deleted = max(await self._count_unseen(cfg.name, upto, page) - p.seen_ours, 0)
            return None
        after = ""
        while True:
            rows = await self.store.dbsync_rows_not_seen(
                cfg.name, upto, after_key=after, limit=page
            )
            if not rows:
                return None
            after = rows[-1].row_key
            ours = [r for r in rows if not r.content_hash.startswith(FOREIGN)]
            ids = [r.hub_id for r in ours if r.hub_id]
            unknown = [r.email for r in ours if not r.hub_id]
            if unknown:
                found = await self.hub.find_by_emails(unknown)
                ids += [rec.id for rec in found.values()]
            if ids:
                tally.write_calls += 1
                await self.hub.remove_from_list(cfg.list, ids)
            await self.store.delete_dbsync_rows(cfg.name, [r.row_key for r in rows])
            tally.deleted += len(ours)

    async def _drop_scratch(self, p: _Pass) -> None:
        while True:
            rows = await self.store.dbsync_rows_not_seen(p.scratch, sys.maxsize, limit=1000)
            if not rows:
                return
            await self.store.delete_dbsync_rows(p.scratch, [r.row_key for r in rows])

    async def _count_unseen(self, name: str, upto: int, page: int) -> int:
        n, after = 0, ""
        while True:
            rows = await self.store.dbsync_rows_not_seen(name, upto, after_key=after, limit=page)
            if not rows:
                return n
            after = rows[-1].row_key
            n += sum(1 for r in rows if not r.content_hash.startswith(FOREIGN))


def _chunks(writes: Sequence[_Write], count: int) -> list[list[_Write]]:
    """Split writes into calls of at most `count` items and MAX_BODY estimated bytes."""
    out: list[list[_Write]] = []
    cur: list[_Write] = []
    size = 0
    for w in writes:
        n = payload_size(w.row)
        if cur and (len(cur) >= count or size + n > MAX_BODY):
            out.append(cur)
            cur, size = [], 0
        cur.append(w)
        size += n
    if cur:
        out.append(cur)
    return out


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a task group (cancellations only when nothing else)."""
    flat: list[BaseException] = []

    def walk(g: BaseExceptionGroup[BaseException]) -> None:
        for e in g.exceptions:
            if isinstance(e, BaseExceptionGroup):
                walk(e)
            else:
                flat.append(e)

    walk(group)
    for e in flat:
        if not isinstance(e, asyncio.CancelledError):
            return e
    return flat[0] if flat else group
