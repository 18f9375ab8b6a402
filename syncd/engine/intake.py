"""Intake: commit accepted changes durably before the sender gets its 2xx.

Concurrent submissions are group-committed: one writer task takes everything waiting and
commits it in a single transaction, so fsync cost is shared by all requests in the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from syncd import metrics
from syncd.errors import StoreError
from syncd.model import Change
from syncd.store.base import StateStore

_Waiting = tuple[Sequence[Change], asyncio.Future[None]]


class InboundIntake:
    """Accepts changes for the queue; `submit` returns only once they are committed."""

    def __init__(
        self,
        store: StateStore,
        *,
        max_batch: int = 2000,
        on_committed: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._on_committed = on_committed
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._closed = False

    async def submit(self, changes: Sequence[Change]) -> None:
        """Commit `changes`; raises StoreError (answer 503) when the store failed."""
        if self._closed:
            raise StoreError("intake closed: the daemon is shutting down")
        if not changes:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((changes, fut))
        self._wake.set()
        # No shield: a cancelled caller cancels only its future; its changes stay in the
        # batch and are committed all the same (the writer skips futures already done).
        await fut

    async def run(self) -> None:
        """The writer loop (owned by the engine component); never exits on store errors."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                waiting = self._waiting
                size = sum(len(cs) for cs, _ in waiting)
                if size <= self._max_batch:
                    # The usual case: everything waiting fits in one transaction.
                    self._waiting = []
                    await self._commit(waiting)
                    continue
                batch: list[_Waiting] = []
                size = 0
                while waiting and (not batch or size < self._max_batch):
                    item = waiting.pop(0)
                    batch.append(item)
                    size += len(item[0])
                await self._commit(batch)

    async def _commit(self, batch: list[_Waiting]) -> None:
        changes = [c for cs, _ in batch for c in cs]
        try:
            await self._store.enqueue(changes)
        except StoreError as exc:
            metrics.STORE_ERRORS.labels("enqueue").inc()
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        by_source: dict[str, int] = {}
        for c in changes:
            by_source[c.source] = by_source.get(c.source, 0) + 1
        for source, n in by_source.items():
            metrics.CHANGES_RECEIVED.labels(source).inc(n)
        for _, fut in batch:
            if not fut.done():
                fut.set_result(None)
        if self._on_committed is not None:
            self._on_committed(len(changes))

    def close(self) -> None:
        """Refuse new submissions (shutdown); already waiting ones are still committed."""
        self._closed = True

    @property
    def backlog(self) -> int:
        """Submissions waiting for the writer."""
        return len(self._waiting)
