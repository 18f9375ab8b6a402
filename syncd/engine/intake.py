"""Intake: commit accepted changes durably before the sender gets its 2xx.

Concurrent submissions are group-committed: the writer takes everything waiting and commits
it in a single transaction, so fsync cost is shared by all requests in the batch.

A committer hands the store its next batch in the same event-loop step in which the last
one came back, and only then answers that batch's senders: each loop round between two
commits (a busy round writes a dozen responses) is time the store sits idle, and that idle
time, not CPU, bounded intake on a 2-core host (bench/intake.py: 10-20 % more requests/s).

Commits can be pipelined (``max_in_flight`` > 1 committers): on MySQL the batches run side
by side and share InnoDB's group commit. A batch never starts while a batch holding one of
its records is still committing, so changes of one record reach the store in the order they
arrived, on any store. The default is one committer: with 32 senders on a 2-core host
pipelining halved the batches and cost 15-25 % more CPU per webhook on both stores for no
steady gain in throughput.
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
        self._committers: set[asyncio.Task[None]] = set()
        self._held: Counter[_RecordId] = Counter()  # records of the batches committing
        self._crash: BaseException | None = None
        self._stopped = False  # run() has ended: committers take no further batch

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

        It starts committers while fewer than max_in_flight run; an unexpected failure of
        a commit is raised here, as if the writer had failed.
        """
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._crash is not None:
                    raise self._crash
                while len(self._committers) < self._max_in_flight:
                    batch, records = self._take()
                    if not batch:
                        break  # nothing waits, or its head waits for a record committing
                    task = loop.create_task(self._commit_from(batch, records))
                    self._committers.add(task)
                    task.add_done_callback(self._ended)
        finally:
            self._stopped = True
            for task in list(self._committers):
                task.cancel()

    def _take(self) -> tuple[list[_Waiting], list[_RecordId]]:
        """Waiting submissions from the head, up to max_batch changes and short of the first
        one that holds a record a committing batch holds; their records become held."""
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
        held.update(records)
        return batch, records

    def _release(self, records: list[_RecordId]) -> None:
        held = self._held
        held.subtract(records)
        for r in records:
            if held[r] <= 0:
                del held[r]

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._committers.discard(task)
        if not task.cancelled() and task.exception() is not None and self._crash is None:
            self._crash = task.exception()
        self._wake.set()

    async def _commit_from(self, batch: list[_Waiting], records: list[_RecordId]) -> None:
        """Commit `batch`, then the batches waiting after it, until none is left."""
        loop = asyncio.get_running_loop()
        while batch:
            changes = [c for cs, _ in batch for c in cs]
            try:
                await self._store.enqueue(changes, ids=False)
                committed = True
            except StoreError as exc:
                metrics.STORE_ERRORS.labels("enqueue").inc()
                _fail(batch, exc)
                committed = False
            except BaseException:
                # Cancelled (shutdown) or a bug: the senders must not wait for ever, nor
                # get 2xx.
                _fail(batch, StoreError("intake stopped before the change was committed"))
                self._release(records)
                raise
            self._release(records)
            done = batch
            batch, records = ([], []) if self._stopped else self._take()
            if committed:
                # Answered in the next loop round: the next batch reaches the store first.
                loop.call_soon(self._answer, done, changes)

    def _answer(self, batch: list[_Waiting], changes: list[Change]) -> None:
        """`batch` is durable: count it and let its senders answer 2xx."""
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
