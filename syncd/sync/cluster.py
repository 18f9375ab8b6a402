"""What the instances sharing one store agree on: a heartbeat per instance (with its view of
the shared state), runs whose instance is gone, and scheduled jobs that run once per
interval for all of them rather than once per instance."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

from syncd.config import Settings
from syncd.errors import StoreError
from syncd.logging import get_logger
from syncd.model import Direction, RunKind, RunStatus
from syncd.store.leases import JobLock
from syncd.store.protocols import CursorStore, StateStore
from syncd.store.types import InstanceBeat
from syncd.sync.gate import DirectionGate

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
        if 0 <= since < every * _DUE_SLACK:
            log.debug("job_not_due", job=job, ran_seconds_ago=round(since, 1))
            return False
    await store.set_cursor(key, now.isoformat())
    return True


async def once_per_interval(
    store: StateStore, job: str, owner: str, every: float, work: Callable[[], Awaitable[None]]
) -> bool:
    """Run a scheduled job unless another instance runs it now or already ran it in this
    interval; whether it ran here. Writes are fenced by the job's lock."""
    lock = JobLock(store, job, owner, max(every, 60.0))
    if not await lock.take():
        return False
    async with lock.kept():
        if not await take_turn(store, job, every):
            return False
        await work()
        return True


class Heartbeat:
    """One instance's part: beat with its view, keep its copy of the shared state fresh,
    close the runs of instances that are gone."""

    def __init__(
        self,
        store: StateStore,
        instance_id: str,
        started_at: datetime,
        gates: Mapping[Direction, DirectionGate],
        settings: Callable[[], Settings],
    ) -> None:
        self._store = store
        self.instance_id = instance_id
        self._started_at = started_at
        self._gates = gates
        self._settings = settings
        self.last_beat: datetime | None = None

    async def run(self) -> None:
        """Beat until cancelled; a store outage skips beats (others see this one as gone
        only after `dead_after`, longer than its leases)."""
        while True:
            try:
                await self.beat()
                await self.close_orphan_runs()
            except StoreError as exc:
                log.warning("heartbeat_failed", error=str(exc))
            await asyncio.sleep(beat_every(self._settings()))

    async def beat(self) -> None:
        """Read the shared state again and record this instance's view of it."""
        for gate in self._gates.values():
            await gate.load()
        view = {d.value: g.view() for d, g in self._gates.items()}
        await self._store.beat(self.instance_id, self._started_at, view)
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
                await self._store.finish_run(
                    run.id,
                    counts=run.counts,
                    status=RunStatus.INTERRUPTED,
                    error="stopped before its end: the instance running it"
                    f" ({run.owner or 'unknown'}) went away",
                )
                log.warning(
                    "run_closed_as_interrupted", run=run.id, kind=kind.value, owner=run.owner
                )
                closed += 1
        await self._store.forget_instances(now - _FORGET_AFTER)
        return closed
