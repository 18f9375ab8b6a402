"""Runs and their failures in the memory store (the rules of ``syncd/store/records.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from syncd.model import ErrorCategory, RunKind, RunStatus, RunTrigger
from syncd.store.memory.state import MemoryState
from syncd.store.sql.dialect import utcnow
from syncd.store.types import Run, RunFailure


def _out(run: Run) -> Run:
    # Run is frozen but its counts are a dict: each caller gets its own.
    return replace(run, counts=dict(run.counts))


class RunOps(MemoryState):
    """Runs of the StateStore protocol, in memory."""

    async def start_run(
        self, kind: RunKind, trigger: RunTrigger, *, name: str | None = None, owner: str = ""
    ) -> int:
        """Record a run as started; its id."""
        self._live()
        run_id = next(self._run_ids)
        self._runs[run_id] = Run(
            id=run_id,
            kind=RunKind(kind),
            trigger=RunTrigger(trigger),
            name=name,
            status="running",
            started_at=utcnow(),
            finished_at=None,
            counts={},
            owner=owner,
        )
        return run_id

    async def finish_run(
        self, run_id: int, *, counts: Mapping[str, int], status: str, error: str | None = None
    ) -> None:
        """Record a run's end, counts and outcome (nothing for an unknown run)."""
        self._live()
        run = self._runs.get(run_id)
        if run is None:
            return
        self._runs[run_id] = replace(
            run,
            status=status,
            finished_at=utcnow(),
            counts={str(k): int(v) for k, v in counts.items()},
            error=error,
        )

    async def interrupt_run(self, run_id: int, *, error: str) -> bool:
        """End a run still marked running as interrupted; False if it ended meanwhile."""
        self._live()
        run = self._runs.get(run_id)
        if run is None or run.status != RunStatus.RUNNING:
            return False
        self._runs[run_id] = replace(
            run, status=RunStatus.INTERRUPTED.value, finished_at=utcnow(), error=error
        )
        return True

    async def get_run(self, run_id: int) -> Run | None:
        """One run."""
        self._live()
        run = self._runs.get(run_id)
        return _out(run) if run is not None else None

    async def list_runs(
        self, *, kind: RunKind | None = None, name: str | None = None, limit: int = 50
    ) -> list[Run]:
        """Most recent runs first."""
        self._live()
        out: list[Run] = []
        if limit <= 0:
            return out
        for run in reversed(self._runs.values()):
            if (kind is None or run.kind == kind) and (name is None or run.name == name):
                out.append(_out(run))
                if len(out) >= limit:
                    break
        return out

    async def running_run(self, kind: RunKind, name: str | None) -> Run | None:
        """The run of this kind and name still marked running (the newest), if any."""
        self._live()
        for run in reversed(self._runs.values()):
            if run.status == "running" and run.kind == kind and run.name == name:
                return _out(run)
        return None

    async def add_run_failures(self, failures: Sequence[RunFailure]) -> None:
        """Record failed rows/records of a run."""
        self._live()
        # Normalised as a SQL store reads them back (a list of columns becomes a tuple).
        rows = [
            RunFailure(
                run_id=int(f.run_id),
                key=f.key,
                columns=tuple(f.columns),
                reason=f.reason,
                category=ErrorCategory(f.category),
                email=f.email,
            )
            for f in failures
        ]
        for row in rows:
            self._failures.setdefault(row.run_id, []).append(row)

    async def run_failures(
        self, run_id: int, *, after: int = 0, limit: int = 1000
    ) -> list[RunFailure]:
        """A run's failures in insertion order, skipping the first `after` of them."""
        self._live()
        start = max(after, 0)
        return self._failures.get(run_id, [])[start : start + max(limit, 0)]
