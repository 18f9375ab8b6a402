"""Counters a run keeps and stores with its run record."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class RunCounts:
    """Base of the per-run counters (flush, pull): all fields are ints."""

    def as_dict(self) -> dict[str, int]:
        """For the run record and the API."""
        return {k: int(v) for k, v in asdict(self).items()}
