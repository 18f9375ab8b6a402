"""State of one dbsync pass and the small helpers of its write path.

Split from dbsync.py, which runs the pass; nothing here does I/O.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from syncd.config import DbsyncSettings
from syncd.dbsync.rows import MappedRow, payload_size, row_hash
from syncd.dbsync.types import FailureExample, RunCancelled, Tally
from syncd.model import ErrorCategory
from syncd.store.leases import JobLock
from syncd.store.types import DbsyncRow, RunFailure

MAX_BODY = 300_000  # bytes per write call; AC refuses bulk bodies over 400 kB
EXAMPLES = 10

Raws = list[Sequence[Any]]  # source rows, values in plan column order

# A stored content hash is "<hash of what was sent>/<source fingerprint>": the second part
# lets an unchanged row be recognised without mapping it (hashes of older versions lack it).
SOURCE_MARK = "/"
# Marks a row whose email already belonged to a hub contact this dbsync did not write
# (update_existing off): remembered so it costs nothing next time, never deleted from the list.
FOREIGN = "x:"
# Marks a row whose contact was already in the hub when this dbsync first wrote it (found by
# a lookup, or the upsert answered "updated"): delete_missing takes it off the list, never
# deletes it, whatever `delete_missing_action` says.
PRIOR = "p:"
# Put before the stored hash of a row delete_missing took off the list (and did not delete):
# the row is kept, so that when it comes back its contact is put back on the list (the hub
# would leave a contact syncd unsubscribed unsubscribed). Never "unchanged".
REMOVED = "r:"


@dataclass(slots=True)
class Write:
    """One row to send: what to record once the hub accepted it."""

    row: MappedRow
    stamp: str  # the content hash to record once the hub accepted the row
    hub_id: str | None
    kind: str  # create | update | upsert (existence unknown) | return (after delete_missing)


class IdBits:
    """A set of store ids, one bit each: a million rows take 125 kB."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, n: int) -> None:
        """Add id `n` (non-negative)."""
        byte = n >> 3
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
        self._bits[byte] |= 1 << (n & 7)

    def __contains__(self, n: object) -> bool:
        if not isinstance(n, int):
            return False
        byte = n >> 3
        return byte < len(self._bits) and bool(self._bits[byte] >> (n & 7) & 1)


@dataclass
class Lookup:
    """A slice of source rows with its store lookup, issued ahead of mapping the slice."""

    raws: Raws
    peeks: list[tuple[str, str, str]]  # peek_rows of `raws`
    mark: int  # Pass.begin_lookup when the lookup was issued
    stored: asyncio.Future[dict[str, DbsyncRow]] | None  # None: no emails to look up


@dataclass(slots=True)
class SliceView:
    """What the parts of one looked-up slice are checked against: the stored rows of its
    emails, the run's emails its lookup may not show (`Pass.since`), and the key of the
    first row of each email met so far in the slice."""

    stored: dict[str, DbsyncRow]
    met: list[set[str]]
    firsts: dict[str, str] = field(default_factory=dict)


class Pass:
    """State of one test or run pass."""

    def __init__(
        self,
        cfg: DbsyncSettings,
        run_id: int,
        test: bool,
        job: JobLock | None = None,
        *,
        exact: bool = False,
    ) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.test = test
        # A test asks the hub whether rows new to this dbsync exist only when told to: one
        # lookup per row on ActiveCampaign, which is hours for a large table.
        self.exact = test and exact
        self.cancelled: str | None = None  # why the operator cancelled it, once they did
        self._job = job
        self.tally = Tally()
        self.failures: list[RunFailure] = []
        self.examples: list[FailureExample] = []
        # Stored rows whose email this pass met (by store id): a later row with the email is
        # a duplicate, and delete_missing leaves them alone. Kept here, one bit per row,
        # rather than written back to every stored row the pass meets.
        self.seen = IdBits()
        # Test mode remembers the emails it met here (no real row may be touched).
        self.scratch = f"~test{run_id}:{cfg.name}"[:64]
        # Rows of this run not yet committed to the store, so later batches still see them:
        # emails in hub write calls not yet answered, and emails recorded or seen since the
        # last commit (with what to commit). Bounded by the calls in flight and the commit interval.
        self.inflight: set[str] = set()
        self.unsent: list[Write] = []  # rows waiting to fill a write call (in `inflight`)
        self.buffered: set[str] = set()
        self.record: list[DbsyncRow] = []
        self.prefix = ""  # fingerprint_prefix of the pass's plan
        self.hasher: Callable[[MappedRow], str] = partial(row_hash, list_id=cfg.list)
        # Store lookups run ahead of the rows being mapped, and commits run behind them: a
        # lookup shows only the commits finished before it was issued, so the emails of
        # every later commit stay visible here until no lookup older than it is left.
        self.commits: list[tuple[int, set[str]]] = []  # (commit number, its emails)
        self.committed = 0  # the last commit number that finished
        self.commit_task: asyncio.Task[None] | None = None
        self._looking: deque[int] = deque()  # `committed` when each pending lookup began

    async def fence(self) -> None:
        """Before each hub write of a run: the run still holds its dbsync's lock (another
        instance took it over if this one stalled past the lock's time to live: the run
        stops with JobLockLost rather than write rows the other run writes too)."""
        if self._job is not None:
            await self._job.check()

    def check_cancelled(self) -> None:
        """Stop here (RunCancelled) if the operator cancelled the pass. Checked where
        stopping loses nothing — after the reading and writing wound down with every call
        in flight recorded, and between pages of `delete_missing` — rather than by
        cancelling the task, which would drop hub answers not yet recorded (and a task
        cancellation can be lost inside a 3.11 `wait_for`)."""
        if self.cancelled is not None:
            raise RunCancelled(self.cancelled)

    def begin_lookup(self) -> int:
        """Note a store lookup issued now; its mark for `since`."""
        self._looking.append(self.committed)
        return self.committed

    def since(self, mark: int) -> list[set[str]]:
        """Emails met by this run that a lookup issued at `mark` may not show: in write
        calls, buffered, or in commits that had not finished then. Ends that lookup."""
        out = [self.inflight, self.buffered, *(e for n, e in self.commits if n > mark)]
        self._looking.popleft()
        # Pending lookups began at `committed` or later than this one: older commits show.
        oldest = min(self._looking, default=self.committed)
        self.commits = [(n, e) for n, e in self.commits if n > oldest]
        return out

    def begin_commit(self) -> int:
        """Hand the buffered emails to a new commit; its number."""
        emails, self.buffered = self.buffered, set()
        number = (self.commits[-1][0] if self.commits else self.committed) + 1
        self.commits.append((number, emails))
        return number

    def met(self, email: str, stored: DbsyncRow | None, since: list[set[str]]) -> bool:
        """Whether an earlier row of this run had `email`: in the sets `since` gave for the
        lookup that found `stored`, written by this run, or a stored row it already met."""
        for emails in since:
            if email in emails:
                return True
        return stored is not None and (stored.run_id == self.run_id or stored.id in self.seen)

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
