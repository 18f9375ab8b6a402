"""The claim trail: one debug line per claim of queue entries."""

from __future__ import annotations

from collections.abc import Sequence

from syncd.logging import get_logger
from syncd.model import Direction, QueueEntry

log = get_logger("syncd.claims")


def log_claimed(direction: Direction, owner: str, entries: Sequence[QueueEntry]) -> None:
    """Log a claim (at debug): lets an operator, and the scale-out test, see that no entry
    is ever held by two instances at once."""
    lease = entries[0].lease_expires_at if entries else None
    log.debug(
        "claimed",
        direction=direction.value,
        owner=owner,
        ids=[e.id for e in entries],
        lease_expires=lease.isoformat() if lease else None,
    )
