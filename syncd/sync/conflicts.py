"""Conflicts: a field changed on both sides since the last sync takes the winner's value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Side = Literal["crm", "hub"]


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@dataclass(frozen=True)
class Resolution:
    """What to write, and which fields were skipped with the reason."""

    write: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)


def resolve(
    outgoing: Mapping[str, Any],
    other_side_pending: Mapping[str, Any],
    *,
    sending_side: Side,
    winner: Side,
) -> Resolution:
    """Drop from `outgoing` the fields the other (winning) side also changed.

    `outgoing` and `other_side_pending` are in the same (target) field names. When the winner
    is the side sending, everything goes. When the winner's value is empty, ours is kept.
    """
    if winner == sending_side or not other_side_pending:
        return Resolution(dict(outgoing))
    write: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, value in outgoing.items():
        if name in other_side_pending and not _empty(other_side_pending[name]):
            skipped[name] = (
                f"conflict: changed on both sides since the last sync; {winner} wins "
                f"(sync.conflict_winner)"
            )
        else:
            write[name] = value
    return Resolution(write, skipped)
