"""The field-level merge: what each side of a linked record gets, given the values both sides
last agreed on (the base).

Pure: no I/O, no clock. Every value is in the CRM's field names and the CRM's form (hub
values pass through the mapping first), so one comparison serves both sides.

- A side's *delta* is the fields it names whose value differs from the base. A side that
  does not name a field says nothing about it: absent is not empty.
- A field in one delta takes that side's value. A field in both deltas with the same value
  is agreed; with different values it is a conflict, and `winner` (``sync.conflict_winner``)
  decides, unless the winner's value is empty: then the other side's value is kept.
- Each side that this operation may write receives the resolved value of every field it
  does not already hold. The base of a field advances only when, after those writes, both
  sides are known to hold the same value; a field the operation may not write to one side
  keeps its old base, so the next operation in the other direction still sees the change
  and carries it over. That is what makes the result the same whatever the order of
  flushes and pulls, and what lets a one-way object switch to two-way later without losing
  edits made meanwhile.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Side(StrEnum):
    """One side of a two-way sync."""

    HUB = "hub"
    CRM = "crm"


def is_empty(value: Any) -> bool:
    """None, or a string of nothing but white space: the value of a cleared field."""
    return value is None or (isinstance(value, str) and not value.strip())


def same(a: Any, b: Any) -> bool:
    """Whether two values are the same for the sync.

    Vendors return one value in different types and spellings, none of which is an edit:
    ``""`` and null, ``5`` and ``"5"``, ``5.0`` and ``"5"``, ``True`` and ``"true"``,
    ``"x "`` and ``"x"``. Two strings are compared as text, so ``"0123"`` stays apart from
    ``"123"`` (a postcode is not a number).
    """
    if is_empty(a) or is_empty(b):
        return is_empty(a) and is_empty(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return str(a).strip().lower() == str(b).strip().lower()
    if isinstance(a, int | float) or isinstance(b, int | float):
        try:
            return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return bool(a == b)


@dataclass(frozen=True)
class Merged:
    """The merge of one record.

    `to_crm` and `to_hub` are the fields to write to each side (CRM names, resolved values);
    `base` is the record's new base once those writes succeed; `overridden` names each
    field whose edit lost a conflict, with the reason; `pending` names the fields resolved
    for a side this operation may not write, with where they will go.
    """

    to_crm: dict[str, Any] = field(default_factory=dict)
    to_hub: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    overridden: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)


def merge(
    base: Mapping[str, Any],
    hub: Mapping[str, Any],
    crm: Mapping[str, Any],
    *,
    winner: Side,
    writes: Collection[Side],
) -> Merged:
    """Merge one record's two sides against its base (see the module docstring).

    `hub` and `crm` hold the fields each side names; `writes` the sides this operation may
    write (a flush writes the CRM, a pull the hub; a one-way object only its target).
    """
    out = Merged(base=dict(base))
    for name in sorted(set(hub) | set(crm)):
        was = base.get(name)
        hub_changed = name in hub and not same(hub[name], was)
        crm_changed = name in crm and not same(crm[name], was)
        if not hub_changed and not crm_changed:
            _agree(out, name, hub, crm)
            continue
        value = _resolve(out, name, hub, crm, hub_changed, crm_changed, winner)
        held: dict[Side, bool] = {}
        for side, values, target in ((Side.HUB, hub, out.to_hub), (Side.CRM, crm, out.to_crm)):
            if name in values and same(values[name], value):
                held[side] = True
            elif side in writes:
                target[name] = value
                held[side] = True
            else:
                held[side] = False
                out.pending[name] = f"reaches the {side} at its next sync from the other side"
        if held[Side.HUB] and held[Side.CRM]:
            out.base[name] = value
    return out


def _agree(out: Merged, name: str, hub: Mapping[str, Any], crm: Mapping[str, Any]) -> None:
    # Neither side changed the field. Where both name it and agree, that is the base (it
    # may have been missing, e.g. for a field mapped after the link was made).
    if name in hub and name in crm and same(hub[name], crm[name]):
        out.base[name] = crm[name]


def _resolve(
    out: Merged,
    name: str,
    hub: Mapping[str, Any],
    crm: Mapping[str, Any],
    hub_changed: bool,
    crm_changed: bool,
    winner: Side,
) -> Any:
    if not (hub_changed and crm_changed):
        return hub[name] if hub_changed else crm[name]
    if same(hub[name], crm[name]):
        return crm[name]
    won, lost = (crm, hub) if winner is Side.CRM else (hub, crm)
    loser = Side.HUB if winner is Side.CRM else Side.CRM
    if is_empty(won[name]):
        out.overridden[name] = (
            f"conflict: changed on both sides since the last sync; the {winner}'s value is "
            f"empty, so the {loser}'s is kept (sync.conflict_winner)"
        )
        return lost[name]
    out.overridden[name] = (
        f"conflict: changed on both sides since the last sync; the {loser}'s edit lost, "
        f"the {winner} wins (sync.conflict_winner)"
    )
    return won[name]
