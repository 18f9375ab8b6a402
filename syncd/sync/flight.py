"""The moving parts of an outbound pull: planned hub writes and their outcomes, batches in
flight, read-ahead."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from syncd.model import (
    Change,
    EntryStatus,
    ErrorCategory,
    ObjectType,
    QueueEntry,
    WriteItem,
    WriteOp,
    WriteResult,
    builder,
)
from syncd.store.types import RecordLink, SettledChange

T = TypeVar("T")

# A record on its way to the hub: a claimed queue entry, or a pulled change sent directly.
Outgoing = QueueEntry | Change


def fields_of(rec: Outgoing) -> dict[str, Any] | Any:
    """The CRM field values a record carries."""
    return rec.payload if isinstance(rec, QueueEntry) else rec.fields


@dataclass
class HubWrite:
    """One planned hub write of a batch: the records (with link, fields, skipped, and the
    base they will have once written) and the items to send, in the same order."""

    object: ObjectType
    op: WriteOp
    rows: list[
        tuple[Outgoing, RecordLink | None, dict[str, Any], dict[str, str], dict[str, Any]]
    ] = field(default_factory=list)
    items: list[WriteItem] = field(default_factory=list)

    def add(
        self,
        e: Outgoing,
        link: RecordLink | None,
        fields: dict[str, Any],
        skipped: dict[str, str],
        base: dict[str, Any],
        item: WriteItem,
    ) -> None:
        """Plan one record's write."""
        self.rows.append((e, link, fields, skipped, base))
        self.items.append(item)

    def keeping(self, entry_ids: set[int]) -> HubWrite:
        """The same write for only the claimed entries among `entry_ids`."""
        out = HubWrite(self.object, self.op)
        for row, item in zip(self.rows, self.items, strict=True):
            if isinstance(row[0], QueueEntry) and row[0].id in entry_ids:
                out.add(*row, item)
        return out


@dataclass(frozen=True)
class Outcome:
    """What became of one record: `kind` is its metrics label (processed, skipped, excluded,
    error); the rest is what its entry records."""

    rec: Outgoing
    kind: str
    link: RecordLink | None = None
    transferred: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    category: ErrorCategory | None = None
    code: str | None = None
    message: str | None = None  # error message or exclusion reason

    def settled(self) -> SettledChange:
        """The outcome of a change sent directly, as the store records it."""
        assert isinstance(self.rec, Change)
        return _settled_change(
            change=self.rec,
            status=STATUS_OF[self.kind],
            link=self.link,
            transferred=self.transferred,
            skipped=self.skipped,
            error_category=self.category,
            error_code=self.code,
            message=self.message,
        )


# Built once per record of every batch: without the frozen dataclasses' per-field setattr.
_outcome = builder(Outcome)
_record_link = builder(RecordLink)
_settled_change = builder(SettledChange)

STATUS_OF = {
    "processed": EntryStatus.PROCESSED,
    "skipped": EntryStatus.PROCESSED,  # unchanged: recorded as processed, nothing sent
    "excluded": EntryStatus.EXCLUDED,
    "error": EntryStatus.ERROR,
}


def outcomes_of(plan: HubWrite, results: list[WriteResult]) -> list[Outcome]:
    """A hub write's outcome per record: the link and fields it got, or its error."""
    obj = plan.object
    out: list[Outcome] = []
    now = datetime.now(UTC)
    for (e, link, _, skipped, base), item, res in zip(plan.rows, plan.items, results, strict=True):
        if not res.ok:
            out.append(
                Outcome(
                    e,
                    "error",
                    category=res.error_category or ErrorCategory.REJECTED,
                    code=res.error_code or "ERROR",
                    message=res.error_message or "rejected by the hub",
                )
            )
            continue
        new_link = _record_link(
            object=obj,
            hub_id=res.id or (link.hub_id if link else None),
            crm_id=e.record_key,
            email=e.email,
            name=e.name,
            sync_tags=frozenset(item.fields.get("tags", ()))
            | (link.sync_tags if link else frozenset()),
            last_synced_at=now,
            base=base,
        )
        transferred = {"object": obj.value, "fields": dict(item.fields), "created": res.created}
        out.append(
            _outcome(
                rec=e,
                kind="processed",
                link=new_link,
                transferred=transferred,
                skipped=skipped,
            )
        )
    return out


def merged(old: Change, new: Change) -> Change:
    """Two changes of one record folded as the queue would: newer values win."""
    return dataclasses.replace(
        new,
        fields={**old.fields, **new.fields},
        email=new.email if new.email is not None else old.email,
        name=new.name if new.name is not None else old.name,
    )


Send = Callable[[asyncio.Task[None] | None, asyncio.Event], Coroutine[Any, Any, None]]


class InFlight:
    """Batches on their way: up to `writing` of them writing to the hub at once (their
    records are disjoint: `holds`), older ones perhaps still recording their outcomes in
    order, while the next is claimed and planned."""

    def __init__(self, writing: int = 1) -> None:
        self._writing = max(writing, 1)
        self._tasks: list[asyncio.Task[None]] = []  # oldest first; each awaits the one before
        self._keys: dict[asyncio.Task[None], frozenset[str]] = {}  # record keys per batch
        self._written_of: dict[asyncio.Task[None], asyncio.Event] = {}

    @property
    def busy(self) -> bool:
        """A batch is on its way (or finished with an error nobody has seen yet)."""
        return bool(self._tasks)

    def holds(self, keys: Collection[str]) -> bool:
        """A batch still on its way carries one of these records: planning them now would
        read links their outcome has not recorded yet."""
        return any(not t.done() and not ks.isdisjoint(keys) for t, ks in self._keys.items())

    def start(self, send: Send, keys: Collection[str] = frozenset()) -> None:
        """Send a batch of the records `keys`: `send(previous, written)` sets `written` after
        its hub writes went through and awaits `previous` before recording its outcome."""
        previous = self._tasks[-1] if self._tasks else None
        # Finished batches need no watching: a failure also fails every later batch.
        self._tasks = [t for t in self._tasks if not t.done() or t is previous]
        self._keys = {t: ks for t, ks in self._keys.items() if not t.done()}
        self._written_of = {t: w for t, w in self._written_of.items() if not t.done()}
        written = asyncio.Event()  # set once the batch is done with the hub
        task = asyncio.ensure_future(send(previous, written))
        self._tasks.append(task)
        self._keys[task] = frozenset(keys)
        self._written_of[task] = written

    async def hub_free(self) -> None:
        """Wait until fewer than `writing` batches are busy with the hub; raise the error of
        a batch that failed."""
        while True:
            for task in self._tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    task.result()
            busy = [t for t in self._tasks if not t.done() and not self._written_of[t].is_set()]
            if len(busy) < self._writing:
                return
            marks = [asyncio.ensure_future(self._written_of[t].wait()) for t in busy]
            try:
                await asyncio.wait({*busy, *marks}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for mark in marks:
                    mark.cancel()

    async def wait(self) -> None:
        """Wait for every batch on its way, oldest first; the first error raises here."""
        for task in self._tasks:
            await task
        self._tasks = []
        self._keys = {}
        self._written_of = {}

    async def abandon(self) -> None:
        """Cancel the batches still writing to the hub (they give their claims back); let
        those past their hub write record their outcome (or stop, if the batch before them
        failed); wait for all. A batch is never cancelled in the middle of recording: its
        outcome would be in the store but not in the run's counts, and queued again."""
        tasks, self._tasks, self._keys = self._tasks, [], {}
        written, self._written_of = self._written_of, {}
        for task in tasks:
            mark = written.get(task)
            if mark is None or not mark.is_set():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


class Unsettled:
    """The batches of pulled changes sent directly whose outcome is not recorded yet."""

    def __init__(self) -> None:
        self._batches: dict[int, list[Change]] = {}
        self._next = 0

    def add(self, changes: list[Change]) -> int:
        """Remember a batch before it is planned; its token."""
        self._next += 1
        self._batches[self._next] = changes
        return self._next

    def done(self, token: int) -> Callable[[], None]:
        """What to call once the batch's outcome is recorded."""

        def forget() -> None:
            self._batches.pop(token, None)

        return forget

    def left(self) -> list[Change]:
        """The changes of every batch not recorded, in the order they were read."""
        return [c for token in sorted(self._batches) for c in self._batches[token]]


async def read_ahead(pages: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """Yield `pages`, reading the next one while the caller writes this one to the hub."""
    it = aiter(pages)
    nxt: asyncio.Future[T] = asyncio.ensure_future(anext(it))
    try:
        while True:
            try:
                page = await nxt
            except StopAsyncIteration:
                return
            nxt = asyncio.ensure_future(anext(it))
            yield page
    finally:
        if not nxt.done():
            nxt.cancel()
            with contextlib.suppress(BaseException):
                await nxt
        elif not nxt.cancelled():
            nxt.exception()  # consumed: an error of a page nobody asked for is not "lost"
