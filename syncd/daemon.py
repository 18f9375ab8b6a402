"""Lifecycle in one place: start in order, reload on SIGHUP, flush on SIGUSR1, drain on SIGTERM.

Signal handlers only set events; the main loop acts on them. Every background task is owned
here and cancelled on the way out; a task that crashes stops the daemon loudly (exit 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from syncd import __version__, metrics
from syncd.config import ConfigInvalid, Settings, load_settings, systemd_env
from syncd.errors import StoreError, StoreUnusable
from syncd.lifecycle import Check, Component
from syncd.logging import configure_logging, get_logger
from syncd.model import Direction, ObjectType
from syncd.sdnotify import SystemdNotifier
from syncd.store import create_store
from syncd.store.protocols import StateStore
from syncd.web.app import RouteInstaller, create_app

log = get_logger("syncd.daemon")

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_STORE_UNUSABLE = 4  # the store exists but cannot be used: an operator must look
EXIT_FORCED = 130
# Settings a reload cannot apply to a running daemon.
_RESTART_KEYS = ("store", "state_dir", "mysql_dsn", "listen", "header_timeout")
GC_YOUNG_THRESHOLD = 100_000  # net allocations between young collections (Python: 700)


def settle_heap() -> None:
    """Tune the collector for serving, once start-up is over."""
    # What startup built (config, routes, modules) lives as long as the process: keep it
    # out of the collector's full passes, which otherwise stall requests for milliseconds.
    gc.collect()
    gc.freeze()
    # A pull, flush or dbsync run keeps thousands of records in flight, each a dozen
    # containers: at the default threshold (700) the young collections walked them over and
    # over, about a quarter of a large pull's CPU. Garbage without cycles is freed at once
    # anyway; only cyclic garbage waits a little longer. The count is of objects made and
    # not yet freed, so the threshold is about the working set: a 1M-row dbsync run keeps
    # 50–100k young containers at its peak and crossed 10,000 490 times (1.7 s of pauses
    # of ~3.5 ms) but 100,000 only twice (0.05 s, pauses of ~25 ms). Measured again when
    # refused webhooks were found waiting for the collector: a 100,000-contact pull ran at
    # 18,472 / 19,008 / 18,529 records/s with it, 17,535 / 13,329 / 17,221 without
    # (bench.outbound, alternating runs), over 5 % on a figure users see, so it stays; the
    # web layer frees refused bodies itself (syncd/web/bodies.py), whenever it runs.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


# Builds a component complete, from the daemon (its host) and the daemon's store.
ComponentFactory = Callable[["Daemon"], Component]


class Daemon:
    """The running syncd process."""

    def __init__(
        self,
        settings: Settings,
        config_path: Path | None,
        *,
        components: list[ComponentFactory] | None = None,
        installers: list[RouteInstaller] | None = None,
        store: StateStore | None = None,
    ) -> None:
        self._settings = settings
        self.config_path = config_path
        self._store = store or create_store(settings.daemon)
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.notifier = SystemdNotifier(systemd_env())
        self.instance_id = settings.daemon.instance_id or f"{os.uname().nodename}:{os.getpid()}"
        self._component_factories = components or []
        self.components: list[Component] = []
        self._installers = installers or []
        self._started_at = time.time()
        self._accepting = False
        self._store_check = Check(False, "not opened yet")
        self._store_opened = asyncio.Event()
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._flush = asyncio.Event()
        self._wake = asyncio.Event()  # set with any of the three above
        self._tasks: set[asyncio.Task[None]] = set()
        self._crashed: BaseException | None = None
        self._exit_code: int | None = None  # set by a fatal condition met while running
        self._signals = 0
        self._runner: web.AppRunner | None = None

    # -- Control (read by the web layer) -------------------------------------------------
    @property
    def settings(self) -> Settings:
        """The configuration in force."""
        return self._settings

    @property
    def store(self) -> StateStore:
        """The state store."""
        return self._store

    @property
    def started_at(self) -> float:
        """Unix start time."""
        return self._started_at

    @property
    def accepting(self) -> bool:
        """False once shutdown began."""
        return self._accepting

    def liveness(self) -> dict[str, Check]:
        """Event loop (answering at all) and scheduler."""
        running = self.scheduler.running
        return {
            "event_loop": Check(True, "running"),
            "scheduler": Check(running, "running" if running else "stopped"),
        }

    def readiness(self) -> dict[str, Check]:
        """Store, scheduler and each component's checks."""
        checks = {"store": self._store_check, **self.liveness()}
        del checks["event_loop"]
        if not self._accepting:
            checks["accepting"] = Check(False, "shutting down")
        for comp in self.components:
            checks.update(comp.readiness())
        return checks

    def job_schedule(self) -> list[dict[str, Any]]:
        """Scheduled jobs and their next run."""
        jobs = []
        for job in self.scheduler.get_jobs():
            nxt = getattr(job, "next_run_time", None)
            jobs.append(
                {
                    "id": job.id,
                    "trigger": str(job.trigger),
                    "next_run": nxt.isoformat() if nxt else None,
                }
            )
        return jobs

    @property
    def started_components(self) -> tuple[Component, ...]:
        """The components started so far, in start order."""
        return tuple(self.components)

    def status_extra(self) -> dict[str, Any]:
        """Instance id and component status."""
        extra: dict[str, Any] = {"instance": self.instance_id}
        for comp in self.components:
            extra.update(comp.status())
        return extra

    # -- task ownership --------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run `coro` as a task owned by the daemon; if it crashes, the daemon stops (exit 1)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._crashed is None:
            self._crashed = exc
            log.error("background_task_crashed", task=task.get_name(), exc_info=exc)
            self._raise(self._stop)

    async def wait_store(self) -> None:
        """Wait until the store has been opened (migrated) once."""
        await self._store_opened.wait()

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> int:
        """Start everything, serve until SIGTERM/SIGINT (or a crash), drain, stop; exit code."""
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        log.info("starting", version=__version__, instance=self.instance_id)
        self.spawn(self._store_supervisor(), "store-supervisor")
        self.scheduler.start()
        for factory in self._component_factories:
            comp = factory(self)
            await comp.start()
            self.components.append(comp)
        await self._start_http()
        settle_heap()
        self._accepting = True
        self.notifier.notify("READY=1", f"STATUS=serving on {self.settings.daemon.listen}")
        if self.notifier.watchdog_interval:
            self.spawn(self._watchdog(self.notifier.watchdog_interval), "watchdog")
        log.info("ready", listen=self.settings.daemon.listen, store=self.settings.daemon.store)
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            if self._reload.is_set():
                self._reload.clear()
                self._do_reload()
            if self._flush.is_set():
                self._flush.clear()
                for comp in self.components:
                    comp.flush_requested()
        return await self._shutdown()

    async def _start_http(self) -> None:
        app = create_app(self, self._installers)
        # aiohttp closes a connection still waiting for a complete request (line and
        # headers) `keepalive_timeout` after it opened or after its last answer, however
        # slowly bytes trickle in: that is the header timeout, idle keep-alives included.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self.settings.daemon.header_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.settings.daemon.host, self.settings.daemon.port, reuse_address=True
        )
        await site.start()

    async def _shutdown(self) -> int:
        self.notifier.notify("STOPPING=1")
        self._accepting = False
        deadline = time.monotonic() + self.settings.daemon.drain_timeout
        log.info("stopping", drain_timeout=self.settings.daemon.drain_timeout)
        for comp in reversed(self.components):
            try:
                await comp.stop(deadline)
            except Exception:
                log.exception("component_stop_failed", component=comp.name)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._runner is not None:
            await self._runner.cleanup()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(StoreError):
            await self._store.close()
        if self._exit_code is not None:
            return self._exit_code
        if self._crashed is not None:
            log.error("stopped_after_crash", error=repr(self._crashed))
            return EXIT_CRASH
        log.info("stopped")
        return EXIT_OK

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGHUP, self._raise, self._reload)
        loop.add_signal_handler(signal.SIGUSR1, self._raise, self._flush)
        loop.add_signal_handler(signal.SIGTERM, self._on_stop_signal)
        loop.add_signal_handler(signal.SIGINT, self._on_stop_signal)

    def _on_stop_signal(self) -> None:
        self._signals += 1
        if self._signals > 1:
            # Everything acknowledged is already committed; leaving now loses nothing.
            os._exit(EXIT_FORCED)
        self._raise(self._stop)

    def _raise(self, event: asyncio.Event) -> None:
        event.set()
        self._wake.set()

    def request_stop(self) -> None:
        """Begin a graceful shutdown (as SIGTERM does)."""
        self._raise(self._stop)

    def request_flush(self) -> None:
        """Flush buffered work now (as SIGUSR1 does)."""
        self._raise(self._flush)

    def _do_reload(self) -> None:
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_settings(self.config_path)
        except ConfigInvalid as exc:
            metrics.CONFIG_RELOADS.labels("failure").inc()
            metrics.CONFIG_PROBLEMS.inc(len(exc.problems))
            for problem in exc.problems:
                log.error("reload_rejected", problem=problem)
            self.notifier.notify("READY=1", "STATUS=reload rejected; previous config kept")
            return
        old = self._settings.daemon
        pinned = [k for k in _RESTART_KEYS if getattr(new.daemon, k) != getattr(old, k)]
        if pinned:
            # The store is open and the port bound: these take effect at the next start.
            # Until then the running values stay, and the status reports them.
            keys = ", ".join(f"daemon.{k}" for k in pinned)
            log.warning("reload_needs_restart", keys=keys, note="kept until the next start")
            metrics.CONFIG_RELOADS.labels("needs_restart").inc()
            new = new.model_copy(
                update={
                    "daemon": new.daemon.model_copy(update={k: getattr(old, k) for k in pinned})
                }
            )
        d = new.daemon
        configure_logging(d.log_level, d.log_format, new.secret_values())
        self._settings = new
        for comp in self.components:
            comp.reload(new)
        metrics.CONFIG_RELOADS.labels("success").inc()
        log.info("reloaded", digest=new.digest())
        self.notifier.notify("READY=1", f"STATUS=serving on {self.settings.daemon.listen}")

    async def _store_supervisor(self) -> None:
        """Open (migrate) the store with backoff, then keep checking it; never crash on it."""
        delay = 0.5
        while not self._store_opened.is_set():
            try:
                await self._store.open()
            except StoreUnusable as exc:
                log.critical("store_unusable", error=str(exc))
                self._exit_code = EXIT_STORE_UNUSABLE
                self._raise(self._stop)
                return
            except StoreError as exc:
                metrics.STORE_ERRORS.labels("open").inc()
                self._store_check = Check(False, f"unreachable: {exc}")
                log.warning("store_unreachable", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            else:
                self._store_opened.set()
                self._store_check = Check(True, "ok")
        pause = 2.0
        while True:
            await asyncio.sleep(pause)
            started = time.monotonic()
            await self.refresh_store_check()
            # With a very large queue the counts take a while; keep this check under ~10 %
            # of the store's time so it never crowds out webhooks and API requests.
            pause = max(2.0, 10 * (time.monotonic() - started))

    async def refresh_store_check(self) -> None:
        """Ping the store and refresh the queue gauges."""
        try:
            async with asyncio.timeout(5.0):
                counts = await self._store.counts()
                pending = await self._store.pending_by_object(Direction.INBOUND)
        except (StoreError, TimeoutError) as exc:
            if self._store_check.ok:
                log.warning("store_unreachable", error=str(exc) or "timeout")
            metrics.STORE_ERRORS.labels("ping").inc()
            self._store_check = Check(False, f"unreachable: {exc or 'timeout'}")
            return
        if not self._store_check.ok:
            log.info("store_recovered")
        self._store_check = Check(True, "ok")
        metrics.QUEUE_ENTRIES.clear()
        for (direction, status), n in counts.items():
            metrics.QUEUE_ENTRIES.labels(direction.value, status.value).set(n)
        for obj in ObjectType:
            metrics.INBOUND_PENDING.labels(obj.value).set(pending.get(obj, 0))

    async def _watchdog(self, interval: float) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(interval)
            # A loop blocked for longer than the systemd timeout must not keep pinging.
            if time.monotonic() - started < interval * 2:
                self.notifier.notify("WATCHDOG=1")
