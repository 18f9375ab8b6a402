"""Claims while they are worked on: the debug trail of each claim, and keeping leases (and
job locks) alive through vendor calls that take longer than expected."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from syncd.errors import StoreError, TransientError
from syncd.logging import get_logger
from syncd.model import Direction, QueueEntry
from syncd.store.protocols import JobLockStore, QueueStore

log = get_logger("syncd.claims")


def log_claimed(direction: Direction, owner: str, entries: Sequence[QueueEntry]) -> None:
    """Log a claim (at debug): lets an operator, and the scale-out test, see that no entry
    is ever held by two instances at once."""
    lease = entries[0].lease_expires_at if entries else None
    log.debug(
        "claimed",
        direction=direction.value,
        owner=owner,
        ids=[e.id for e in entries],
        lease_expires=lease.isoformat() if lease else None,
    )


@contextlib.asynccontextmanager
async def kept_alive(renew: Callable[[], Awaitable[object]], every: float) -> AsyncIterator[None]:
    """Call `renew` every `every` seconds while the block runs (the task is owned here).

    A failed renewal is logged and tried again next time: the lease it protects still has
    time left, and the store supervisor reports an unreachable store.
    """

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await renew()
            except StoreError as exc:
                log.warning("renew_failed", error=str(exc))

    task = asyncio.get_running_loop().create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Leases:
    """The leases of one claim while its batch is sent: renewed at a third of their length
    (a slow vendor call must not let another instance reclaim and send them again), and
    checked before each vendor write, so a claimer that lost them (frozen past its lease,
    cut off from the store) writes nothing: its fencing check.

    The owner is the claim's own token (`claim_owner`): a claim that lost its entries
    records no outcome for them, even if this instance claims them again later."""

    def __init__(
        self, store: QueueStore, entries: Sequence[QueueEntry], owner: str, lease_seconds: float
    ) -> None:
        self._store = store
        self._ids = [e.id for e in entries]
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.lost: set[int] = set()

    async def renew(self) -> None:
        """Extend the leases still held; the others are lost for good."""
        held = [i for i in self._ids if i not in self.lost]
        if held:
            n = await self._store.extend_leases(
                held, owner=self.owner, lease_seconds=self.lease_seconds
            )
            if n < len(held):
                self.lost.update(
                    set(held) - await self._store.held_leases(held, owner=self.owner, for_seconds=0)
                )

    async def still_held(self, ids: Sequence[int]) -> set[int]:
        """The ones among `ids` this claim may still write: held, with at least a third of
        a lease left (a stall between this check and the write is the window that remains;
        README "Running N instances")."""
        wanted = [i for i in ids if i not in self.lost]
        held = await self._store.held_leases(
            wanted, owner=self.owner, for_seconds=self.lease_seconds / 3
        )
        lost = set(wanted) - held
        if lost:
            self.lost.update(lost)
            # Still ours but too close to the end: back to pending for the next claim at
            # once (a no-op for those another claimer holds).
            await self._store.release(sorted(lost), owner=self.owner)
        return held


@contextlib.asynccontextmanager
async def keep_leases(
    store: QueueStore, entries: Sequence[QueueEntry], owner: str, lease_seconds: float
) -> AsyncIterator[Leases]:
    """Renew the leases of claimed `entries` while the block runs; yields their `Leases`."""
    leases = Leases(store, entries, owner, lease_seconds)
    async with kept_alive(leases.renew, max(lease_seconds / 3, 0.05)):
        yield leases


_claims = itertools.count(1)


def claim_owner(instance: str) -> str:
    """The owner token of one claim, its fencing token: the instance and a number that
    grows with each of its claims. Every outcome is recorded under it, so a claim that lost
    its entries (stalled past the lease) never records over a later claim's, even one by
    the same instance."""
    return f"{instance}#{next(_claims)}"


class JobLockLost(TransientError):
    """Another instance took over a job lock this one held (it stalled past the lock's time
    to live): the job stops before its next vendor write; the new holder does the work."""


class JobLock:
    """A named job lock (a pull, a dbsync run) while its job runs: taken once, renewed at a
    third of its time to live, checked before each vendor write (`check`), released at the
    end. Lost for good once another instance took it over."""

    def __init__(self, store: JobLockStore, name: str, owner: str, ttl: float) -> None:
        self._store = store
        self.name = name
        self.owner = owner
        self.ttl = ttl
        self.lost = False

    async def take(self) -> bool:
        """Take the lock unless another live owner holds it."""
        return await self._store.try_job_lock(self.name, self.owner, self.ttl)

    async def renew(self) -> None:
        """Extend the lock while it is ours; note when it no longer is."""
        if not self.lost and not await self._store.extend_job_lock(self.name, self.owner, self.ttl):
            self.lost = True
            log.warning("job_lock_lost", name=self.name, owner=self.owner)

    async def check(self) -> None:
        """The fencing check before a vendor write: extends the lock (a full time to live
        for the write ahead) or raises JobLockLost."""
        await self.renew()
        if self.lost:
            raise JobLockLost(
                f"{self.name}: another instance took the job over (this one stalled past"
                f" the lock's {self.ttl:g} s); it stops before writing again"
            )

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[JobLock]:
        """Renew the taken lock while the block runs, release it after."""
        try:
            async with kept_alive(self.renew, max(self.ttl / 3, 0.05)):
                yield self
        finally:
            try:
                await self._store.release_job_lock(self.name, self.owner)
            except StoreError as exc:
                # It runs out on its own: the next holder waits at most its time to live.
                log.warning("job_lock_release_failed", name=self.name, error=str(exc))
