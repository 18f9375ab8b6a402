"""One way to record a run (flush, pull, dbsync): started in the store, finished with its
counts and outcome whatever happens inside, timed, counted in the metrics and logged.

A run cancelled half-way (a stop, a lost lease) is finished too, as failed with what it did,
so no run stays ``running`` after the process that ran it has moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from syncd import metrics
from syncd.errors import StoreError
from syncd.logging import get_logger
from syncd.model import RunKind, RunStatus, RunTrigger
from syncd.store.protocols import RunStore

log = get_logger("syncd.runs")


@dataclass
class RunRecord:
    """A run in progress: its id, and the outcome its body sets."""

    id: int
    counts: Callable[[], Mapping[str, int]]
    status: str = RunStatus.SUCCEEDED
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # extra words for the log line

    def fail(self, error: str) -> None:
        """The run failed; `error` is what the run record and the log say."""
        self.status, self.error = RunStatus.FAILED, error


@contextlib.asynccontextmanager
async def recorded_run(
    store: RunStore,
    kind: RunKind,
    trigger: RunTrigger,
    *,
    counts: Callable[[], Mapping[str, int]],
    owner: str,
    name: str | None = None,
    event: str,
) -> AsyncIterator[RunRecord]:
    """Start a run, give the body its record, finish the run however the body ends.

    `event` names the log line (``flushed``, ``pulled`` …). The body marks a failure with
    `RunRecord.fail`; an exception leaving the body fails the run with its words and goes on.
    """
    run = RunRecord(await store.start_run(kind, trigger, name=name, owner=owner), counts)
    started = time.perf_counter()
    try:
        yield run
    except asyncio.CancelledError:
        run.status, run.error = RunStatus.INTERRUPTED, "stopped before its end (daemon stopping)"
        raise
    except BaseException as exc:
        if run.status == RunStatus.SUCCEEDED:
            run.fail(str(exc) or type(exc).__name__)
        raise
    finally:
        took = time.perf_counter() - started
        with contextlib.suppress(StoreError):
            await asyncio.shield(
                store.finish_run(run.id, counts=run.counts(), status=run.status, error=run.error)
            )
        _observe(kind, trigger, name, took, run.status == RunStatus.SUCCEEDED)
        log.info(
            event,
            run=run.id,
            trigger=trigger.value,
            status=run.status,
            **({"name": name} if name else {}),
            **run.fields,
            **run.counts(),
        )


def _observe(kind: RunKind, trigger: RunTrigger, name: str | None, took: float, ok: bool) -> None:
    # The metric names are the operators' (dashboards, alert rules): one table, kept.
    if kind is RunKind.FLUSH:
        metrics.FLUSHES.labels(trigger.value).inc()
        metrics.FLUSH_DURATION.observe(took)
        if ok:
            metrics.LAST_SUCCESS.labels("flush").set_to_current_time()
    elif kind is RunKind.PULL and name:
        metrics.PULL_DURATION.labels(name).observe(took)
        if ok:
            metrics.LAST_SUCCESS.labels(f"pull_{name}").set_to_current_time()
