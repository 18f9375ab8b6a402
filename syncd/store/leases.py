"""Claims while they are worked on: the debug trail of each claim, and keeping leases (and
job locks) alive through vendor calls that take longer than expected."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from syncd.errors import StoreError
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


def keep_leases(
    store: QueueStore, entries: Sequence[QueueEntry], owner: str, lease_seconds: float
) -> contextlib.AbstractAsyncContextManager[None]:
    """Renew the leases of claimed `entries` at a third of their length while they are sent,
    so a slow vendor call (timeouts × retries with backoff) never lets another instance
    reclaim and send them a second time."""
    ids = [e.id for e in entries]
    return kept_alive(
        lambda: store.extend_leases(ids, owner=owner, lease_seconds=lease_seconds),
        max(lease_seconds / 3, 0.05),
    )


def keep_job_lock(
    store: JobLockStore, name: str, owner: str, ttl: float
) -> contextlib.AbstractAsyncContextManager[None]:
    """Extend a held job lock at a third of its time to live while the job runs."""
    return kept_alive(lambda: store.try_job_lock(name, owner, ttl), max(ttl / 3, 0.05))
