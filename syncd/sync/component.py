"""The sync engine as a daemon component: intake, flush loop, scheduled pulls, polling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger

from syncd import metrics
from syncd.config import Settings
from syncd.emails import normalize_email
from syncd.errors import IntegrationError, StoreError
from syncd.lifecycle import Check, Host
from syncd.logging import get_logger
from syncd.model import Change, Direction, ObjectType, RunTrigger, parse_tags
from syncd.store.leases import JobLock
from syncd.store.protocols import StateStore
from syncd.sync.cluster import beat_every, once_per_interval
from syncd.sync.deletions import Deletions
from syncd.sync.gate import DirectionGate
from syncd.sync.inbound import InboundFlusher
from syncd.sync.intake import InboundIntake
from syncd.sync.outbound import OutboundPuller
from syncd.sync.poll_window import Seen
from syncd.sync.pull_run import PullBusy, PullCounts, PullNotDue, PullNotStarted
from syncd.vendors.protocols import CrmConnector, HubConnector, TimeCursor

WRITE_PROBE_SECONDS = 5.0
WRITE_PROBE_KEY = "intake:write_probe"
log = get_logger("syncd.sync")
# Accounts first: a contact or deal gets its primary company once both ends are linked.
PULL_OBJECTS = (ObjectType.ACCOUNT, ObjectType.LEAD, ObjectType.CONTACT, ObjectType.OPPORTUNITY)


class SyncEngine:
    """Two-way sync: webhook intake and buffer flushes inbound, scheduled pulls outbound."""

    name = "engine"

    def __init__(self, host: Host, store: StateStore, crm: CrmConnector, hub: HubConnector) -> None:
        self.host = host
        self.store = store
        self.crm = crm
        self.hub = hub
        self.gates = {d: DirectionGate(d, store) for d in (Direction.INBOUND, Direction.OUTBOUND)}
        self.deletions = Deletions(store, crm, hub, lambda: host.settings)

        def settings() -> Settings:
            return host.settings

        self.flusher = InboundFlusher(
            store, crm, hub, settings, self.gates[Direction.INBOUND], host.instance_id
        )
        self.intake = InboundIntake(store, on_committed=self.flusher.notify_arrivals)
        self.puller = OutboundPuller(
            store, crm, hub, settings, self.gates[Direction.OUTBOUND], host.instance_id
        )
        self._interval: tuple[float, ...] = ()
        self._pull_every = 0.0
        self._ready = asyncio.Event()
        self._pull_tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start intake at once; the loops start working once the store is open."""
        self.host.spawn(self.intake.run(), "intake")
        self.host.spawn(self._after_store_open(), "engine-start")
        self.host.spawn(self._probe_writes(), "write-probe")

    async def _probe_writes(self) -> None:
        """While the last intake commit failed, try one small write every few seconds.

        An instance that failed a write is not ready, so a balancer stops sending it the
        webhooks whose success would show the store writable again; this write does.
        """
        while True:
            await asyncio.sleep(WRITE_PROBE_SECONDS)
            if self.intake.last_error is None:
                continue
            try:
                await self.store.set_cursor(WRITE_PROBE_KEY, datetime.now(UTC).isoformat())
            except StoreError:
                continue
            log.info("store_writable_again", after=self.intake.last_error)
            self.intake.last_error = None

    @property
    def started(self) -> bool:
        """The store is open and the loops run."""
        return self._ready.is_set()

    async def wait_started(self) -> None:
        """Wait until the store is open and the loops run (on-demand pulls wait for this)."""
        await self._ready.wait()

    async def _after_store_open(self) -> None:
        host = self.host
        await host.wait_store()
        for gate in self.gates.values():
            await _retry_store(gate.load)
        if self.store.kind == "sqlite":
            # An embedded store has one process: claims still leased are from our previous
            # life (killed, or cut short by a second SIGTERM); send them again right away.
            far = datetime.now(UTC) + timedelta(days=36500)
            n = await self.store.reclaim_expired(now=far)
            if n:
                log.warning("claims_recovered_at_start", entries=n)
        for conn in (self.crm, self.hub):
            try:
                await conn.start()
            except IntegrationError as exc:
                # A vendor down or refusing us at start is no different from later: each
                # call authenticates on demand and a failing direction pauses; stay up.
                log.warning("connector_start_failed", error=str(exc))
        self._schedule(host.settings, first=True)
        host.spawn(self.flusher.run(), "flusher")
        host.spawn(self._lease_reaper(), "lease-reaper")
        host.spawn(self._keep_shared_state(), "shared-state")
        self._ready.set()
        log.info("engine_started", hub=host.settings.hub.kind if host.settings.hub else None)

    def _schedule(self, settings: Settings, *, first: bool = False) -> None:
        out = settings.outbound
        seconds = out.interval_seconds_override or out.interval_hours * 3600.0
        poll = settings.inbound.poll_interval
        key = (seconds, poll)
        if key == self._interval:
            return
        self._interval = key
        self._pull_every = seconds
        sched = self.host.scheduler
        start = datetime.now(UTC) + timedelta(seconds=5 if first else seconds)
        for obj in PULL_OBJECTS:
            sched.add_job(
                self._scheduled_pull,
                IntervalTrigger(seconds=seconds, start_date=start),
                args=[obj],
                id=f"pull:{obj.value}",
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=int(seconds),
            )
        if poll > 0:
            sched.add_job(
                self._poll,
                IntervalTrigger(seconds=poll),
                id="poll:hub",
                replace_existing=True,
                max_instances=1,
                coalesce=True,
            )
        elif sched.get_job("poll:hub") is not None:
            sched.remove_job("poll:hub")

    async def _scheduled_pull(self, obj: ObjectType) -> None:
        # The scheduler runs the job in a task of its own: known here, it is stopped (and
        # its run recorded as interrupted, its lock released) when the daemon stops.
        task = asyncio.current_task()
        if task is not None:
            self._pull_tasks.add(task)
        try:
            await self.puller.pull(obj, RunTrigger.SCHEDULE, due_every=self._pull_every)
        except PullNotDue as exc:
            log.debug("pull_skipped", object=obj.value, reason=str(exc))
        except PullBusy as exc:
            log.info("pull_skipped", object=obj.value, reason=str(exc))
        except StoreError as exc:
            log.warning("pull_store_error", object=obj.value, error=str(exc))
        finally:
            if task is not None:
                self._pull_tasks.discard(task)

    async def pull_now(self, obj: ObjectType) -> PullCounts:
        """An on-demand pull (API/CLI); raises PullBusy when one is running."""
        await self.wait_started()
        return await self.puller.pull(obj, RunTrigger.MANUAL)

    def pull_in_background(self, obj: ObjectType) -> asyncio.Future[None]:
        """Start an on-demand pull without waiting for its end (the engine has started).
        The future is done once the pull holds its lock (it runs), or raises PullBusy (it
        runs elsewhere, or here already), StoreError or PullNotStarted (the daemon is
        stopping): the caller can say which."""
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def begun() -> None:
            if not started.done():
                started.set_result(None)

        async def run() -> None:
            try:
                await self.puller.pull(obj, RunTrigger.MANUAL, on_start=begun)
            except (PullBusy, StoreError) as exc:
                if not started.done():
                    started.set_exception(exc)
            except BaseException:
                if not started.done():
                    started.set_exception(PullNotStarted("the pull stopped before it began"))
                raise
            begun()  # it ended before its start was reported (nothing to pull)

        task = self.host.spawn(run(), f"pull-{obj.value}")
        self._pull_tasks.add(task)
        task.add_done_callback(self._pull_tasks.discard)
        return started

    async def _poll(self) -> None:
        """The polling job: once per interval for the cluster (its cursors are shared)."""
        every = self.host.settings.inbound.poll_interval
        try:
            await once_per_interval(
                self.store, "poll:hub", self.host.instance_id, every, self._poll_hub
            )
        except StoreError as exc:
            log.warning("poll_store_error", error=str(exc))

    async def _poll_hub(self, lock: JobLock) -> None:
        """Polling fallback: hub contacts (and companies, when accounts sync from the hub)
        changed since the poll cursors become changes; deleted contacts are recorded.

        The cursors are shared: each move (and each deletion recorded) is checked against
        the poll's lock, so a poll that stalled past it cannot move them back."""
        try:
            await self._poll_changed(ObjectType.CONTACT, lock)
            accounts = self.host.settings.sync.objects.get(ObjectType.ACCOUNT)
            if accounts is not None and accounts.enabled and accounts.direction != "crm-to-hub":
                await self._poll_changed(ObjectType.ACCOUNT, lock)
            # Contacts deleted in the hub since the last poll (no webhook says so on
            # ActiveCampaign; HubSpot's may not reach a daemon that polls).
            gone, covered = await self.hub.deleted_since(
                ObjectType.CONTACT, await self.store.get_cursor("poll:hub:deleted")
            )
            await lock.check()
            for obj in (ObjectType.CONTACT, ObjectType.LEAD):
                await self.deletions.seen(obj, "hub", [d.id for d in gone])
            if covered:
                await self.store.set_cursor("poll:hub:deleted", covered)
        except IntegrationError as exc:
            log.warning("poll_failed", error=str(exc))

    async def _poll_changed(self, obj: ObjectType, lock: JobLock) -> None:
        name = f"poll:hub:{obj.value}"
        people = obj is ObjectType.CONTACT
        cursor = await self.store.get_cursor(name)
        overlap = self.host.settings.inbound.poll_overlap_seconds
        # A hub whose search finds changes late is re-read a window before the cursor; the
        # records already taken there are skipped (poll_window.py).
        window = isinstance(self.hub, TimeCursor) and overlap > 0
        seen = Seen.decode(await self.store.get_cursor(f"{name}:seen")) if window else None
        since = cursor
        if window and cursor is not None:
            assert isinstance(self.hub, TimeCursor)
            since = self.hub.cursor_before(cursor, overlap)
        async for page in self.hub.changed_since(obj, since):
            records = list(page.records)
            if seen is not None:
                records = seen.fresh(records)
                seen = seen.add(records, overlap)
            changes = [
                Change(
                    direction=Direction.INBOUND,
                    object=obj,
                    record_key=r.id,
                    source="poll",
                    fields={**dict(r.fields), "tags": sorted(r.tags)} if people else dict(r.fields),
                    email=normalize_email(r.email) if people else None,
                    name=_name(r.fields) if people else r.fields.get("name"),
                    event="poll",
                )
                for r in records
                if not people or parse_tags(r.tags)
            ]
            await self.intake.submit(changes)
            if page.cursor:
                await lock.check()
                if seen is not None:
                    await self.store.set_cursor(f"{name}:seen", seen.encode())
                resume = page.cursor
                if window and cursor is not None:
                    assert isinstance(self.hub, TimeCursor)
                    resume = self.hub.later_cursor(resume, cursor)  # never moved back
                await self.store.set_cursor(name, resume)

    async def _keep_shared_state(self) -> None:
        """Read the shared pause state and errors again at each heartbeat's pace, so an idle
        instance's view (its status, its heartbeat) is current too."""
        while True:
            await asyncio.sleep(beat_every(self.host.settings))
            for gate in self.gates.values():
                await gate.refresh()

    async def _lease_reaper(self) -> None:
        while True:
            # Check at least twice per lease so a dead instance's claims return promptly.
            await asyncio.sleep(min(15.0, self.host.settings.daemon.lease_seconds / 2))
            try:
                n = await self.store.reclaim_expired()
            except StoreError:
                continue
            if n:
                log.warning("leases_reclaimed", entries=n)
                self.flusher.notify_arrivals()

    async def stop(self, deadline: float) -> None:
        """Stop intake, drain the buffer within the deadline, close connectors."""
        loop = asyncio.get_running_loop()
        self.intake.close()
        pulls = list(self._pull_tasks)
        for task in pulls:
            task.cancel()
        await asyncio.gather(*pulls, return_exceptions=True)
        if self._ready.is_set():
            remaining = deadline - loop.time()
            try:
                async with asyncio.timeout(max(remaining, 0.1)):
                    await self.flusher.flush(RunTrigger.DRAIN)
            except TimeoutError:
                log.warning("drain_timeout", note="unsent changes stay queued for the next start")
            except (StoreError, IntegrationError) as exc:
                log.warning("drain_failed", error=str(exc))
        for conn in (self.crm, self.hub):
            await conn.close()

    def reload(self, settings: Settings) -> None:
        """New intervals reschedule the jobs; flush settings are read live."""
        if self._ready.is_set():
            self._schedule(settings)
        self.flusher.notify_arrivals()

    def readiness(self) -> dict[str, Check]:
        """One check per direction: ok, paused, or the integration error pausing it."""
        checks: dict[str, Check] = {
            "engine": Check(self._ready.is_set(), "running" if self._ready.is_set() else "starting")
        }
        failed = self.intake.last_error
        checks["intake"] = Check(
            failed is None, "ok" if failed is None else f"last write failed: {failed}"
        )
        for d, gate in self.gates.items():
            if gate.error is not None:
                cat, msg = gate.error
                checks[f"{d.value}"] = Check(False, f"{cat.value}: {msg}")
            else:
                checks[f"{d.value}"] = Check(True, "paused" if gate.paused else "ok")
        return checks

    def status(self) -> dict[str, Any]:
        """Paused directions and integration errors for /api/v1/status."""
        return {
            # This instance's view; "read_at": when it last read the shared state.
            "directions": {d.value: g.view() for d, g in self.gates.items()},
            "last_flush": self.flusher.last_flush,
        }

    def flush_requested(self) -> None:
        """SIGUSR1."""
        fut = self.flusher.request()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())


async def _retry_store(fn: Callable[[], Coroutine[Any, Any, object]]) -> None:
    delay = 0.5
    while True:
        try:
            await fn()
            return
        except StoreError:
            metrics.STORE_ERRORS.labels("engine_start").inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def _name(fields: Any) -> str | None:
    first, last = fields.get("firstName"), fields.get("lastName")
    name = " ".join(str(p) for p in (first, last) if p)
    return name or None
