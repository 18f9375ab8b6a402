"""State of one dbsync pass and the small helpers of its write path.

Split from dbsync.py, which runs the pass; nothing here does I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from syncd.config import DbsyncSettings
from syncd.engine.dbsync_rows import MappedRow, payload_size
from syncd.engine.dbsync_types import FailureExample, Tally
from syncd.model import ErrorCategory
from syncd.store.base import DbsyncRow, RunFailure

MAX_BODY = 300_000  # bytes per write call; AC refuses bulk bodies over 400 kB
EXAMPLES = 10

Raws = list[Sequence[Any]]  # source rows, values in plan column order


@dataclass
class Write:
    """One row to send: what to record once the hub accepted it."""

    row: MappedRow
    stamp: str  # the content hash to record once the hub accepted the row
    hub_id: str | None
    kind: str  # create | update | upsert (existence unknown)
    stored: bool


class Pass:
    """State of one test or run pass."""

    def __init__(self, cfg: DbsyncSettings, run_id: int, test: bool) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.test = test
        self.tally = Tally()
        self.failures: list[RunFailure] = []
        self.examples: list[FailureExample] = []
        self.seen_ours = 0  # test mode: stored rows of ours met by the pass
        # Test mode remembers the emails it met here (no real row may be touched).
        self.scratch = f"~test{run_id}:{cfg.name}"[:64]
        # Rows of this run not yet committed to the store, so later batches still see them:
        # emails in hub write calls not yet answered, and emails recorded or seen since the
        # last commit (with what to commit). Bounded by the calls in flight and the commit interval.
        self.inflight: set[str] = set()
        self.unsent: list[Write] = []  # rows waiting to fill a write call (in `inflight`)
        self.buffered: set[str] = set()
        self.record: list[DbsyncRow] = []
        self.seen_keys: list[str] = []
        self.hasher: Any = None  # source_hasher of the pass's plan

    def met(self, email: str) -> bool:
        """Whether an earlier row of this run had `email` and is not in the store yet."""
        return email in self.inflight or email in self.buffered

    def fail(
        self,
        key: str,
        columns: tuple[str, ...],
        reason: str,
        category: ErrorCategory,
        email: str | None,
        *,
        counted: bool = True,
    ) -> None:
        if counted:
            self.tally.failed += 1
            if len(self.examples) < EXAMPLES:
                self.examples.append(FailureExample(key, columns, reason))
        self.failures.append(RunFailure(self.run_id, key[:255], columns, reason, category, email))


def chunk_writes(writes: Sequence[Write], count: int) -> list[list[Write]]:
    """Split writes into calls of at most `count` items and MAX_BODY estimated bytes."""
    out: list[list[Write]] = []
    cur: list[Write] = []
    size = 0
    for w in writes:
        n = payload_size(w.row)
        if cur and (len(cur) >= count or size + n > MAX_BODY):
            out.append(cur)
            cur, size = [], 0
        cur.append(w)
        size += n
    if cur:
        out.append(cur)
    return out


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a task group (cancellations only when nothing else)."""
    flat: list[BaseException] = []

    def walk(g: BaseExceptionGroup[BaseException]) -> None:
        for e in g.exceptions:
            if isinstance(e, BaseExceptionGroup):
                walk(e)
            else:
                flat.append(e)

    walk(group)
    for e in flat:
        if not isinstance(e, asyncio.CancelledError):
            return e
    return flat[0] if flat else group
