"""The HubSpot simulator's search: filterGroups (OR of ANDs), operators, sorts, free text.

Values are compared by the property's type: datetimes as epoch milliseconds (HubSpot takes
milliseconds or ISO strings), numbers as numbers, strings case-insensitively. A multi-checkbox
property matches EQ/IN/CONTAINS_TOKEN when any of its ``;``-separated values does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from syncd.sandbox.hubspot.objects import HsObject
from syncd.sandbox.hubspot.state import PropertyDef, parse_time_ms

OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25
SEARCHABLE = {
    "contacts": ("email", "firstname", "lastname", "phone", "company", "hs_object_id"),
    "companies": ("name", "domain", "website", "phone", "hs_object_id"),
    "deals": ("dealname", "pipeline", "dealstage", "hs_object_id"),
}


class SearchInvalid(Exception):
    """The search request is malformed (answered 400 VALIDATION_ERROR)."""


Predicate = Callable[[HsObject], bool]


def compile_search(obj: str, body: Mapping[str, Any], defs: Mapping[str, PropertyDef]) -> Predicate:
    """A predicate for the body's filterGroups and free-text query."""
    groups = body.get("filterGroups") or []
    if not isinstance(groups, list):
        raise SearchInvalid("filterGroups must be a list")
    if len(groups) > MAX_GROUPS:
        raise SearchInvalid(f"Too many filter groups ({len(groups)}); the limit is {MAX_GROUPS}")
    total = 0
    compiled: list[list[Predicate]] = []
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise SearchInvalid("each filter group needs a filters list")
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise SearchInvalid(
                f"Too many filters in a group ({len(filters)}); the limit is "
                f"{MAX_FILTERS_PER_GROUP}"
            )
        total += len(filters)
        compiled.append([_compile_filter(f, defs) for f in filters])
    if total > MAX_FILTERS:
        raise SearchInvalid(f"Too many filters ({total}); the limit is {MAX_FILTERS}")
    query = str(body.get("query") or "").strip().lower()
    searchable = SEARCHABLE[obj]

    def matches(rec: HsObject) -> bool:
        if compiled and not any(all(p(rec) for p in grp) for grp in compiled):
            return False
        if query:
            return any(query in (rec.properties.get(n) or "").lower() for n in searchable)
        return True

    return matches


def sort_key(
    body: Mapping[str, Any], defs: Mapping[str, PropertyDef]
) -> tuple[Callable[[HsObject], tuple[Any, ...]], bool]:
    """The key and reverse flag for the body's sorts (default: record id ascending)."""
    sorts = body.get("sorts") or []
    if not sorts:
        return (lambda r: (0, int(r.id))), False
    first = sorts[0]
    if isinstance(first, str):  # HubSpot also accepts ["-createdate"] style sorts
        name, desc = first.lstrip("-"), first.startswith("-")
    elif isinstance(first, dict):
        name = str(first.get("propertyName", ""))
        desc = str(first.get("direction", "ASCENDING")).upper() == "DESCENDING"
    else:
        raise SearchInvalid("sorts must be a list of {propertyName, direction}")
    pdef = defs.get(name)
    if pdef is None:
        raise SearchInvalid(f"Unable to sort on unknown property {name}")
    fast = _fast(name)

    def key(rec: HsObject) -> tuple[Any, ...]:
        value = fast(rec) if fast else _typed(pdef, rec.properties.get(name))
        # Records lacking the value sort after the others in either direction.
        missing = value is None
        return (
            (1 if not desc else 0) if missing else (0 if not desc else 1),
            value or 0,
            int(rec.id),
        )

    return key, desc


def _fast(name: str) -> Callable[[HsObject], Any] | None:
    """Readers for the properties the record keeps natively (no parsing per record)."""
    if name in ("lastmodifieddate", "hs_lastmodifieddate"):
        return lambda r: r.updated_ms
    if name == "createdate":
        return lambda r: r.created_ms
    if name == "hs_object_id":
        return lambda r: float(r.id)
    return None


def _typed(pdef: PropertyDef, raw: Any) -> Any:
    if raw is None or raw == "":
        return None
    if pdef.type in ("datetime", "date"):
        return parse_time_ms(raw)
    if pdef.type == "number":
        try:
            return float(raw)
        except (TypeError, ValueError):
            return None
    return str(raw).lower()


def _compile_filter(f: Any, defs: Mapping[str, PropertyDef]) -> Predicate:
    if not isinstance(f, dict):
        raise SearchInvalid("a filter must be an object")
    name = f.get("propertyName")
    op = str(f.get("operator", "")).upper()
    if op not in OPERATORS:
        raise SearchInvalid(f"Unknown operator {op!r}")
    pdef = defs.get(str(name))
    if pdef is None:
        raise SearchInvalid(f"There was a problem with the filter on property {name!r}")
    multi = pdef.field_type == "checkbox"
    fast = _fast(pdef.name)

    def values_of(rec: HsObject) -> list[Any]:
        if fast is not None:
            return [fast(rec)]
        raw = rec.properties.get(pdef.name)
        if raw is None or raw == "":
            return []
        parts = str(raw).split(";") if multi else [raw]
        return [_typed(pdef, p) for p in parts if p != ""]

    if op == "HAS_PROPERTY":
        return lambda r: bool(values_of(r))
    if op == "NOT_HAS_PROPERTY":
        return lambda r: not values_of(r)
    if op in ("IN", "NOT_IN"):
        raw_values = f.get("values")
        if not isinstance(raw_values, list):
            raise SearchInvalid(f"operator {op} needs a values list")
        wanted = {_typed(pdef, v) for v in raw_values}
        if op == "IN":
            return lambda r: any(v in wanted for v in values_of(r))
        return lambda r: not any(v in wanted for v in values_of(r))
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        pattern = _token_pattern(str(f.get("value", "")))
        hit: Predicate = lambda r: any(  # noqa: E731
            pattern.fullmatch(str(v)) or any(pattern.fullmatch(t) for t in _tokens(str(v)))
            for v in values_of(r)
        )
        return hit if op == "CONTAINS_TOKEN" else (lambda r: not hit(r))
    target = _typed(pdef, f.get("value"))
    if target is None and op != "NEQ":
        raise SearchInvalid(f"operator {op} on {name} needs a value")
    if op == "BETWEEN":
        high = _typed(pdef, f.get("highValue"))
        if high is None:
            raise SearchInvalid("BETWEEN needs value and highValue")
        return lambda r: any(target <= v <= high for v in values_of(r))
    compare = _COMPARE[op]
    if op == "NEQ":
        return lambda r: not any(v == target for v in values_of(r))
    return lambda r: any(_safe(compare, v, target) for v in values_of(r))


def _safe(compare: Callable[[Any, Any], bool], a: Any, b: Any) -> bool:
    try:
        return compare(a, b)
    except TypeError:
        return False


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": lambda a, b: a == b,
    "NEQ": lambda a, b: a != b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
}


def _tokens(text: str) -> Sequence[str]:
    return [t for t in re.split(r"[^0-9a-z]+", text.lower()) if t]


def _token_pattern(value: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in value.lower().split("*")]
    return re.compile(".*".join(parts))
