"""What the instances sharing one store agree on: a heartbeat per instance (with its view of
the shared state), runs whose instance is gone, and scheduled jobs that run once per
interval for all of them rather than once per instance."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.config import Settings
from syncd.errors import StoreError
from syncd.lifecycle import Check, Host
from syncd.logging import get_logger
from syncd.model import RunKind, RunStatus
from syncd.store.leases import JobLock
from syncd.store.protocols import CursorStore, StateStore
from syncd.store.types import InstanceBeat

log = get_logger("syncd.cluster")

# A tick that comes this early in the interval (timers of different instances drift and
# start at different moments) still counts as the interval's run.
_DUE_SLACK = 0.9
# Instances not seen for this long are dropped from the store (and the status).
_FORGET_AFTER = timedelta(days=1)


def beat_every(settings: Settings) -> float:
    """Seconds between heartbeats: often enough for the status to be current and for a
    gone instance to be noticed within a lease."""
    return min(5.0, settings.daemon.lease_seconds / 3)


def dead_after(settings: Settings) -> float:
    """An instance is gone when it has not beaten for this long: its claims' leases have
    run out too, so nothing of it is still at work."""
    return max(settings.daemon.lease_seconds, 3 * beat_every(settings))


def alive(beat: InstanceBeat, settings: Settings, now: datetime) -> bool:
    """Whether an instance's last heartbeat is recent enough for it to be at work."""
    return (now - beat.seen_at).total_seconds() < dead_after(settings)


async def take_turn(store: CursorStore, job: str, every: float) -> bool:
    """Whether this instance's tick of a scheduled job is the interval's run; if so, its
    start is recorded for the others. Called under the job's lock, so two instances cannot
    both take the same interval."""
    key = f"schedule:{job}"
    last = await store.get_cursor(key)
    now = datetime.now(UTC)
    if last is not None:
        since = (now - datetime.fromisoformat(last)).total_seconds()
        # A start up to an interval ahead of this clock is another host's skew: not due
        # yet. Further ahead is a clock gone wrong, which must not stop the schedule.
        if -every <= since < every * _DUE_SLACK:
            log.debug("job_not_due", job=job, ran_seconds_ago=round(since, 1))
            return False
    await store.set_cursor(key, now.isoformat())
    return True


async def once_per_interval(
    store: StateStore,
    job: str,
    owner: str,
    every: float,
    work: Callable[[JobLock], Awaitable[None]],
) -> bool:
    """Run a scheduled job unless another instance runs it now or already ran it in this
    interval; whether it ran here. `work` gets the job's lock to check before its writes."""
    lock = JobLock(store, job, owner, max(every, 60.0))
    if not await lock.take():
        return False
    async with lock.kept():
        if not await take_turn(store, job, every):
            return False
        await work(lock)
        return True


class Heartbeat:
    """Every instance's part in the cluster (a component of any daemon on a store): beat
    with its view of the shared state, and close the runs of instances that are gone."""

    name = "heartbeat"

    def __init__(
        self, host: Host, store: StateStore, view: Callable[[], Mapping[str, Any]]
    ) -> None:
        self._host = host
        self._store = store
        self._view = view
        self.instance_id = host.instance_id
        self._started_at = datetime.now(UTC)
        self.last_beat: datetime | None = None

    def _settings(self) -> Settings:
        return self._host.settings

    async def start(self) -> None:
        """Beat once the store is open, until the daemon stops."""
        self._host.spawn(self._run(), "heartbeat")

    async def stop(self, deadline: float) -> None:
        """Nothing to finish: the task is the daemon's to cancel."""

    def reload(self, settings: Settings) -> None:
        """The beat interval follows `lease_seconds` by itself."""

    def readiness(self) -> dict[str, Check]:
        """No check of its own: a failing beat is a store problem, reported as such."""
        return {}

    def status(self) -> dict[str, Any]:
        """When this instance last beat."""
        last = self.last_beat
        return {"last_heartbeat": last.isoformat() if last else None}

    def flush_requested(self) -> None:
        """SIGUSR1 is for the components that buffer work."""

    async def _run(self) -> None:
        """A store outage skips beats (others see this one as gone only after
        `dead_after`, as long as its leases)."""
        await self._host.wait_store()
        while True:
            try:
                await self.beat()
                await self.close_orphan_runs()
            except StoreError as exc:
                log.warning("heartbeat_failed", error=str(exc))
            await asyncio.sleep(beat_every(self._settings()))

    async def beat(self) -> None:
        """Record that this instance is alive, with its view of the shared state."""
        await self._store.beat(self.instance_id, self._started_at, dict(self._view()))
        self.last_beat = datetime.now(UTC)

    async def close_orphan_runs(self) -> int:
        """Runs still `running` whose instance is gone (no heartbeat for `dead_after`) end
        as interrupted; so do those begun before this instance started by a previous life
        of it (a fixed instance id) or, on an embedded store (one process), by anyone."""
        settings = self._settings()
        now = datetime.now(UTC)
        beats = {b.id: b for b in await self._store.instances()}
        grace = timedelta(seconds=dead_after(settings))
        embedded = self._store.kind == "sqlite"
        closed = 0
        for kind in RunKind:
            for run in await self._store.list_runs(kind=kind, limit=200):
                if run.status != RunStatus.RUNNING:
                    continue
                earlier_life = run.started_at < self._started_at and (
                    embedded or run.owner == self.instance_id
                )
                if run.owner == self.instance_id and not earlier_life:
                    continue  # at work here
                beat = beats.get(run.owner or "")
                gone = (
                    earlier_life
                    or (beat is not None and not alive(beat, settings, now))
                    or (beat is None and now - run.started_at > grace)
                )
                if not gone:
                    continue
                if not await self._store.interrupt_run(
                    run.id,
                    error="stopped before its end: the instance running it"
                    f" ({run.owner or 'unknown'}) went away",
                ):
                    continue  # it ended meanwhile: its own record stands
                log.warning(
                    "run_closed_as_interrupted", run=run.id, kind=kind.value, owner=run.owner
                )
                closed += 1
        await self._store.forget_instances(now - _FORGET_AFTER)
        return closed
