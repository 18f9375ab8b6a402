"""The dbsync daemon component: runs on request (API/CLI) and on schedules, one at a time each.

Schedules (``manual``, ``every 6h``, a cron expression) become APScheduler jobs named
``dbsync:<name>`` and are replaced on SIGHUP. A run started over the API is claimed (and
recorded) before the request is answered, then continues as a task owned by the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syncd.config import DbsyncSettings, HubSettings, MysqlDsn, Settings, parse_schedule
from syncd.dbsync.runner import DbsyncRunner
from syncd.dbsync.source import MySqlSource
from syncd.dbsync.types import DbsyncBusy
from syncd.errors import ConfigError, IntegrationError, StoreError
from syncd.lifecycle import Check, Host
from syncd.logging import get_logger
from syncd.model import RunTrigger
from syncd.store.protocols import StateStore
from syncd.vendors.protocols import HubConnector

log = get_logger("syncd.dbsync")
JOB_PREFIX = "dbsync:"
HubFactory = Callable[[HubSettings], HubConnector]


def default_source(cfg: DbsyncSettings) -> MySqlSource:
    """The read-only source of one dbsync."""
    return MySqlSource(MysqlDsn.parse(cfg.dsn.get_secret_value()))


def default_hub(settings: HubSettings) -> HubConnector:
    """The hub connector the config names (the shared connector factory)."""
    from syncd.vendors.factory import build_hub

    return build_hub(settings)


@dataclass(frozen=True)
class LookupCost:
    """The hub lookups a test --exact needs at most, and their time at the rate limit."""

    rows: int  # rows matching the rules: an upper bound of those new to this dbsync
    calls: int
    minutes: float

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"rows": self.rows, "calls": self.calls, "minutes": round(self.minutes, 1)}


@dataclass
class Progress:
    """Live progress of a run in this process."""

    name: str
    rows_read: int = 0
    total: int = 0
    started: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON form with rate and ETA."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.rows_read / elapsed
        left = max(self.total - self.rows_read, 0)
        return {
            "rows_read": self.rows_read,
            "total": self.total,
            "rows_per_second": round(rate, 1),
            "eta_seconds": round(left / rate, 1) if rate > 0 else None,
        }


class DbsyncComponent:
    """Runs dbsyncs on request and on schedule."""

    name = "dbsync"

    def __init__(
        self,
        host: Host,
        store: StateStore,
        hub_factory: HubFactory = default_hub,
        source_factory: Callable[[DbsyncSettings], Any] = default_source,
        *,
        lock_ttl: float = 60.0,
    ) -> None:
        self._host = host
        self._store = store
        self._hub_factory = hub_factory
        self._source_factory = source_factory
        self._lock_ttl = lock_ttl
        self._runner: DbsyncRunner | None = None
        self._hub_settings: HubSettings | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.progress: dict[int, Progress] = {}
        self._ready = asyncio.Event()
        self._build(host.settings)

    # -- Component protocol ------------------------------------------------------------------
    async def start(self) -> None:
        """Schedules start once the store is open."""
        self._host.spawn(self._after_store(), "dbsync-start")

    async def _after_store(self) -> None:
        await self._host.wait_store()
        self._schedule(self._host.settings)
        self._ready.set()

    async def stop(self, deadline: float) -> None:
        """Let running runs finish until `deadline`, then cancel them (marked failed)."""
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=max(deadline - time.monotonic(), 0.0))
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.hub.close()

    def reload(self, settings: Settings) -> None:
        """Apply new dbsync entries and schedules (and a new hub connection if it changed)."""
        if settings.hub != self._hub_settings and not self._tasks:
            old = self._runner
            self._build(settings)
            if old is not None:
                self._host.spawn(old.hub.close(), "dbsync-hub-close")
        if self._ready.is_set():
            self._schedule(settings)

    def readiness(self) -> dict[str, Check]:
        """dbsync adds no readiness check: a broken source fails its own runs only."""
        return {}

    def status(self) -> dict[str, Any]:
        """Runs going on in this process."""
        return {"dbsync_running": {p.name: rid for rid, p in self.progress.items()}}

    def flush_requested(self) -> None:
        """Nothing buffered."""

    # -- used by the API ---------------------------------------------------------------------
    def config(self, name: str) -> DbsyncSettings | None:
        """The dbsync entry called `name` in the config in force."""
        return self._host.settings.dbsync_by_name(name)

    async def request_run(
        self,
        name: str,
        trigger: RunTrigger = RunTrigger.MANUAL,
        *,
        test: bool = False,
        exact: bool = False,
    ) -> int:
        """Claim and start a run (or a test, which writes nothing); its id. KeyError for an
        unknown name, DbsyncBusy if a run or test of it is going on."""
        cfg = self.config(name)
        if cfg is None:
            raise KeyError(name)
        runner = self._need_runner()
        run_id = await runner.begin(cfg, trigger, test=test)
        prog = Progress(name, started=time.monotonic())
        self.progress[run_id] = prog

        def on_progress(read: int, total: int) -> None:
            prog.rows_read, prog.total = read, total

        async def go() -> None:
            try:
                await runner.execute(cfg, run_id, on_progress, test=test, exact=exact)
            except (IntegrationError, StoreError) as exc:
                log.warning("dbsync_run_failed", dbsync=name, run=run_id, error=str(exc))
            finally:
                self.progress.pop(run_id, None)
                self._tasks.pop(run_id, None)

        self._tasks[run_id] = self._host.spawn(go(), f"dbsync-{name}-{run_id}")
        return run_id

    async def lookup_cost(self, name: str) -> LookupCost:
        """What a test --exact of `name` will cost at most: every row matching its rules
        looked up in the hub (it looks up only those new to this dbsync)."""
        cfg = self.config(name)
        if cfg is None:
            raise KeyError(name)
        runner = self._need_runner()
        source = self._source_factory(cfg)
        try:
            matching = await source.count(cfg.table, cfg.rules)
        finally:
            await source.close()
        # At most every matching row: the stored rows of this dbsync include some that no
        # longer match or were found in the hub, so "matching minus stored" could undercount.
        rows = matching
        per_call = max(runner.hub.emails_per_lookup, 1)
        assert self._hub_settings is not None  # a runner exists only with a hub
        rate = self._hub_settings.effective_rate_limit
        calls = -(-rows // per_call)
        return LookupCost(rows, calls, calls * rate.per_seconds / rate.requests / 60)

    def cancel(self, run_id: int) -> bool:
        """Cancel a run or test going on in this process (recorded interrupted); False if
        none is (it ended, or runs on another instance)."""
        task = self._tasks.get(run_id)
        if task is None or task.done():
            return False
        return self._need_runner().cancel(run_id, "cancelled by the operator")

    async def wait(self, run_id: int) -> None:
        """Wait for a run started here to end."""
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.wait([task])

    # -- internals ---------------------------------------------------------------------------
    def _need_runner(self) -> DbsyncRunner:
        if self._runner is None:
            raise ConfigError("dbsync needs a [hub] section in the config")
        return self._runner

    def _build(self, settings: Settings) -> None:
        self._hub_settings = settings.hub
        if settings.hub is None:
            self._runner = None
            return
        self._runner = DbsyncRunner(
            self._store,
            self._hub_factory(settings.hub),
            self._source_factory,
            owner=self._host.instance_id,
            lock_ttl=self._lock_ttl,
        )

    def _schedule(self, settings: Settings) -> None:
        scheduler = self._host.scheduler
        wanted: set[str] = set()
        for cfg in settings.dbsync:
            sched = parse_schedule(cfg.schedule)
            if sched.kind == "manual":
                continue
            job_id = JOB_PREFIX + cfg.name
            wanted.add(job_id)
            trigger: IntervalTrigger | CronTrigger
            if sched.kind == "interval":
                trigger = IntervalTrigger(seconds=sched.seconds, timezone="UTC")
            else:
                trigger = CronTrigger.from_crontab(sched.cron, timezone="UTC")
            scheduler.add_job(
                self._scheduled,
                trigger=trigger,
                id=job_id,
                args=[cfg.name],
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=300,
            )
        for job in scheduler.get_jobs():
            if job.id.startswith(JOB_PREFIX) and job.id not in wanted:
                job.remove()

    async def _scheduled(self, name: str) -> None:
        try:
            run_id = await self.request_run(name, RunTrigger.SCHEDULE)
        except DbsyncBusy as exc:
            log.info("dbsync_schedule_skipped", dbsync=name, reason=str(exc))
        except KeyError:
            log.warning("dbsync_schedule_unknown", dbsync=name)
        except (IntegrationError, StoreError) as exc:
            log.warning("dbsync_schedule_failed", dbsync=name, error=str(exc))
        else:
            log.info("dbsync_scheduled_run", dbsync=name, run=run_id)
