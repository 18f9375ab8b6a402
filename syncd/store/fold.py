"""Folding the changes of one record into its pending entry: the one rule the queue keeps in
every store (SQL and in-memory), so they cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Fold:
    """Values of one record folded in arrival order: later values win, changed fields unite,
    and a later email or name replaces the earlier one only when it has one."""

    source: str
    event: str
    email: str | None
    name: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)

    def absorb(
        self,
        payload: Mapping[str, Any],
        changed: Sequence[str] | frozenset[str] | set[str],
        *,
        source: str,
        event: str,
        email: str | None,
        name: str | None,
    ) -> None:
        """Fold newer values over what is held."""
        self.payload.update(payload)
        self.changed.update(changed)
        self.source, self.event = source, event
        self.email = email if email is not None else self.email
        self.name = name if name is not None else self.name
