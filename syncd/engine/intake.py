"""Intake: commit accepted changes durably before the sender gets its 2xx.

Concurrent submissions are group-committed: the writer takes everything waiting and commits
it in a single transaction, so fsync cost is shared by all requests in the batch.

Commits can be pipelined (``max_in_flight`` > 1): while one batch commits, the next is
already handed to the store, which starts it the moment the previous one is durable instead
of after the event loop has seen that commit; on MySQL the two run side by side and share
InnoDB's group commit. A batch never starts while a batch holding one of its records is
still committing, so changes of one record reach the store in the order they arrived, on
any store. The default is one batch in flight: with 32 senders on a 2-core host
(bench/intake.py) pipelining halved the batches and cost 15-25 % more CPU per webhook on
both stores for no steady gain in throughput.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence

from syncd import metrics
from syncd.errors import StoreError
from syncd.model import Change
from syncd.store.base import StateStore

_Waiting = tuple[Sequence[Change], asyncio.Future[None]]
_RecordId = tuple[str, str, str]  # direction, object, record key


def _records(changes: Sequence[Change]) -> list[_RecordId]:
    return [(c.direction, c.object, c.record_key) for c in changes]


class InboundIntake:
    """Accepts changes for the queue; `submit` returns only once they are committed."""

    def __init__(
        self,
        store: StateStore,
        *,
        max_batch: int = 2000,
        max_in_flight: int = 1,
        on_committed: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._max_in_flight = max(1, max_in_flight)
        self._on_committed = on_committed
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._commits: set[asyncio.Task[None]] = set()
        self._held: Counter[_RecordId] = Counter()  # records of the batches committing
        self._crash: BaseException | None = None

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
        """The writer loop (owned by the engine component); never exits on store errors.

        An unexpected failure of a commit is raised here, as if the writer had failed.
        """
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._crash is not None:
                    raise self._crash
                while self._waiting and len(self._commits) < self._max_in_flight:
                    batch, records = self._take()
                    if not batch:
                        break  # its first submission waits for a record still committing
                    self._start(batch, records)
        finally:
            for task in self._commits:
                task.cancel()

    def _take(self) -> tuple[list[_Waiting], list[_RecordId]]:
        """Waiting submissions from the head, up to max_batch changes and short of the first
        one that holds a record a committing batch holds."""
        batch: list[_Waiting] = []
        records: list[_RecordId] = []
        held = self._held
        for item in self._waiting:
            if batch and len(records) >= self._max_batch:
                break
            mine = _records(item[0])
            if held and any(r in held for r in mine):
                break
            batch.append(item)
            records += mine
        del self._waiting[: len(batch)]
        return batch, records

    def _start(self, batch: list[_Waiting], records: list[_RecordId]) -> None:
        self._held.update(records)
        task = asyncio.get_running_loop().create_task(self._commit(batch))
        self._commits.add(task)
        task.add_done_callback(lambda t: self._done(t, records))

    def _done(self, task: asyncio.Task[None], records: list[_RecordId]) -> None:
        self._commits.discard(task)
        self._held.subtract(records)
        for r in records:
            if self._held[r] <= 0:
                del self._held[r]
        if not task.cancelled() and task.exception() is not None and self._crash is None:
            self._crash = task.exception()
        self._wake.set()

    async def _commit(self, batch: list[_Waiting]) -> None:
        changes = [c for cs, _ in batch for c in cs]
        try:
            await self._store.enqueue(changes, ids=False)
        except StoreError as exc:
            metrics.STORE_ERRORS.labels("enqueue").inc()
            _fail(batch, exc)
            return
        except BaseException:
            # Cancelled (shutdown) or a bug: the senders must not wait for ever, nor get 2xx.
            _fail(batch, StoreError("intake stopped before the change was committed"))
            raise
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


def _fail(batch: list[_Waiting], exc: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(exc)
