"""Counters a run keeps and stores with its run record."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class RunCounts:
    """Base of the per-run counters (flush, pull): all fields but `error` are ints.

    `error` says why the run failed (None: it did not), for the caller that waited on it."""

    error: str | None = None

    def as_dict(self) -> dict[str, int]:
        """For the run record and the API."""
        return {k: int(v) for k, v in asdict(self).items() if k != "error"}
