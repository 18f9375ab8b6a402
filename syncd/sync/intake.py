"""Intake: commit accepted changes durably before the sender gets its 2xx.

Concurrent submissions are group-committed: the store takes everything waiting and commits
it in a single transaction, so fsync cost is shared by all requests in the batch.

The intake is the store's `ChangeFeed`: one stream (`QueueStore.enqueue_stream`) takes the
waiting submissions batch after batch, and the intake answers each batch's senders once the
store has settled it. The SQLite store takes the next batch on its own thread the moment the
last one has committed; the event loop answers meanwhile. Every round trip through a busy
loop between two commits was time the store sat idle, and that idle time, not CPU, bounded
intake on a 2-core host (bench/intake.py).

One stream at a time, taking from the head: changes of one record reach the store in the
order they arrived, on any store. (Several committers side by side were tried: with 32
senders on a 2-core host they halved the batches and cost 15-25 % more CPU per webhook.)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

from syncd import metrics
from syncd.errors import StoreError
from syncd.model import Change
from syncd.store.protocols import QueueStore
from syncd.store.types import FeedBatch

_Waiting = tuple[Sequence[Change], asyncio.Future[None]]


class InboundIntake:
    """Accepts changes for the queue; `submit` returns only once they are committed."""

    def __init__(
        self,
        store: QueueStore,
        *,
        max_batch: int = 2000,
        on_committed: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._on_committed = on_committed
        # The store may take from another thread (see SqliteStore.enqueue_stream).
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []
        self._stopped = False  # run() has ended: the store takes nothing more
        self._wake = asyncio.Event()
        self._closed = False
        self._stream: asyncio.Task[None] | None = None
        self._crash: BaseException | None = None
        # Why the last commit failed; None once one succeeds. Readiness reports it: a store
        # that answers reads but refuses writes (a full disk) must not look ready.
        self.last_error: str | None = None

    async def submit(self, changes: Sequence[Change]) -> None:
        """Commit `changes`; raises StoreError (answer 503) when the store failed."""
        if self._closed:
            raise StoreError("intake closed: the daemon is shutting down")
        if not changes:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._stopped:
                raise StoreError("intake stopped: the daemon is shutting down")
            self._waiting.append((changes, fut))
        self._wake.set()
        # No shield: a cancelled caller cancels only its future; its changes stay in the
        # batch and are committed all the same (`settled` skips futures already done).
        await fut

    async def run(self) -> None:
        """The writer loop (owned by the engine component); never exits on store errors.

        It starts a stream whenever submissions wait and none runs; an unexpected failure
        of the stream is raised here, as if the writer had failed.
        """
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._crash is not None:
                    raise self._crash
                if self._stream is None and self.backlog:
                    self._stream = loop.create_task(self._store.enqueue_stream(self))
                    self._stream.add_done_callback(self._ended)
        finally:
            with self._lock:
                self._stopped = True
                left, self._waiting = self._waiting, []
            _fail(left, StoreError("intake stopped before the change was committed"))
            if self._stream is not None:
                self._stream.cancel()

    def take(self) -> FeedBatch | None:
        """Waiting submissions from the head, up to max_batch changes (ChangeFeed)."""
        with self._lock:
            if self._stopped or not self._waiting:
                return None
            n = taken = 0
            for changes, _ in self._waiting:
                if taken and n + len(changes) > self._max_batch:
                    break
                n += len(changes)
                taken += 1
            batch = self._waiting[:taken]
            del self._waiting[:taken]
        return FeedBatch([c for cs, _ in batch for c in cs], batch)

    def settled(self, batch: FeedBatch, error: StoreError | None) -> None:
        """Answer the batch's senders: 2xx once durable, the StoreError otherwise."""
        waiting: list[_Waiting] = batch.ref
        if error is not None:
            metrics.STORE_ERRORS.labels("enqueue").inc()
            self.last_error = str(error) or type(error).__name__
            _fail(waiting, error)
            return
        self.last_error = None
        by_source: dict[str, int] = {}
        for c in batch.changes:
            by_source[c.source] = by_source.get(c.source, 0) + 1
        for source, n in by_source.items():
            metrics.CHANGES_RECEIVED.labels(source).inc(n)
        for _, fut in waiting:
            if not fut.done():
                fut.set_result(None)
        if self._on_committed is not None:
            self._on_committed(len(batch.changes))

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._stream = None
        if not task.cancelled() and task.exception() is not None and self._crash is None:
            self._crash = task.exception()
        self._wake.set()  # submissions that came after its last take start the next one

    def close(self) -> None:
        """Refuse new submissions (shutdown); already waiting ones are still committed."""
        self._closed = True

    @property
    def backlog(self) -> int:
        """Submissions waiting for the store."""
        return len(self._waiting)


def _fail(batch: Sequence[_Waiting], exc: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(exc)
