"""Incremental reads through HubSpot's search API, past its 10,000-results-per-query cap.

`walk_changes` searches on the last-modified property in ascending order and pages with
``after``. When a query reaches the cap it starts a new query from the newest timestamp it
saw (``GTE``), skipping the ids it already returned at that boundary timestamp. If more
than a whole window shares one timestamp, it walks that timestamp by record id instead.
User rules are pushed down as filters when HubSpot can express them, else checked here.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from syncd.rules import Condition, Group, Op, Rule
from syncd.vendors.hubspot.answers import (
    MODIFIED,
    SEARCH_CAP,
    SEARCH_PAGE,
    parse_hs_datetime,
    to_ms,
)

SearchFn = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
Filter = dict[str, Any]
MAX_GROUPS = 5

_OPS = {
    Op.EQ: "EQ",
    Op.NE: "NEQ",
    Op.GT: "GT",
    Op.GE: "GTE",
    Op.LT: "LT",
    Op.LE: "LTE",
    Op.IN: "IN",
    Op.IS_NULL: "NOT_HAS_PROPERTY",
    Op.IS_NOT_NULL: "HAS_PROPERTY",
}


def _filter(cond: Condition) -> Filter | None:
    op = _OPS.get(cond.op)
    if op is None:
        return None
    out: Filter = {"propertyName": cond.field, "operator": op}
    if cond.op is Op.IN:
        out["values"] = [_text(v) for v in _values(cond.value)]
    elif cond.value is not None:
        out["value"] = _text(cond.value)
    return out


def _values(v: Any) -> tuple[Any, ...]:
    if v is None:
        return ()
    return tuple(v) if isinstance(v, tuple | list) else (v,)


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def rule_groups(rule: Rule | None) -> list[list[Filter]] | None:
    """The rule as HubSpot filterGroups (OR of ANDs), or None when it cannot be expressed."""
    if rule is None:
        return [[]]
    if isinstance(rule, Condition):
        f = _filter(rule)
        return None if f is None else [[f]]
    if rule.mode == "all":
        flat: list[Filter] = []
        for item in rule.items:
            sub = rule_groups(item)
            if sub is None or len(sub) != 1:
                return None
            flat.extend(sub[0])
        return [flat]
    groups: list[list[Filter]] = []
    for item in rule.items:
        sub = rule_groups(item)
        if sub is None:
            return None
        groups.extend(sub)
    return groups if len(groups) <= MAX_GROUPS else None


def rule_fields(rule: Rule | None) -> set[str]:
    """Every field a rule reads."""
    if rule is None:
        return set()
    if isinstance(rule, Condition):
        return {rule.field}
    return set().union(*(rule_fields(i) for i in rule.items))


def rule_matches(rule: Rule, fields: Mapping[str, Any]) -> bool:
    """Evaluate a rule against a record's properties (when it was not pushed down)."""
    if isinstance(rule, Group):
        results = (rule_matches(i, fields) for i in rule.items)
        return all(results) if rule.mode == "all" else any(results)
    raw = fields.get(rule.field)
    value = None if raw in (None, "") else str(raw)
    if rule.op is Op.IS_NULL:
        return value is None
    if rule.op is Op.IS_NOT_NULL:
        return value is not None
    if value is None:
        return rule.op is Op.NE
    if rule.op is Op.IN:
        return value.lower() in {_text(v).lower() for v in _values(rule.value)}
    target = _text(rule.value)
    lv, lt = value.lower(), target.lower()
    if rule.op is Op.CONTAINS:
        return lt in lv
    if rule.op is Op.STARTS_WITH:
        return lv.startswith(lt)
    if rule.op is Op.ENDS_WITH:
        return lv.endswith(lt)
    a, b = _comparable(value, target)
    outcome = {
        Op.EQ: a == b,
        Op.NE: a != b,
        Op.GT: a > b,
        Op.GE: a >= b,
        Op.LT: a < b,
        Op.LE: a <= b,
    }[rule.op]
    return bool(outcome)


def _comparable(a: str, b: str) -> tuple[Any, Any]:
    num = re.compile(r"^-?\d+(\.\d+)?$")
    if num.match(a) and num.match(b):
        return float(a), float(b)
    da, db = parse_hs_datetime(a), parse_hs_datetime(b)
    if da is not None and db is not None and not num.match(a):
        return da, db
    return a.lower(), b.lower()


def _row_ms(row: Mapping[str, Any], prop: str) -> int:
    dt = parse_hs_datetime((row.get("properties") or {}).get(prop)) or parse_hs_datetime(
        row.get("updatedAt")
    )
    return to_ms(dt) if dt is not None else 0


def _body(
    groups: list[list[Filter]],
    extra: list[Filter],
    sort: str,
    properties: list[str],
    limit: int,
    after: int,
) -> dict[str, Any]:
    filter_groups = [{"filters": g + extra} for g in groups if g + extra]
    body: dict[str, Any] = {
        "filterGroups": filter_groups,
        "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
        "properties": properties,
        "limit": limit,
    }
    if after:
        body["after"] = str(after)
    return body


async def walk_changes(
    search: SearchFn,
    hs_obj: str,
    since_ms: int | None,
    properties: list[str],
    groups: list[list[Filter]],
    *,
    page_size: int = SEARCH_PAGE,
    cap: int = SEARCH_CAP,
) -> AsyncIterator[tuple[list[dict[str, Any]], int | None]]:
    """Pages of changed rows (oldest first), each with the newest timestamp seen so far."""
    mod = MODIFIED[hs_obj]
    lower, op = since_ms, "GTE"
    skip: set[str] = set()
    newest = since_ms
    while True:
        last_ts, at_last = lower, set(skip)
        after = 0
        finished = False
        while True:
            window = []
            if lower is not None:
                window = [{"propertyName": mod, "operator": op, "value": str(lower)}]
            limit = min(page_size, cap - after)
            resp = await search(hs_obj, _body(groups, window, mod, properties, limit, after))
            rows = []
            for row in resp.get("results") or []:
                rid, ts = str(row["id"]), _row_ms(row, mod)
                if ts == lower and rid in skip:
                    continue  # returned by the previous window already
                rows.append(row)
                if last_ts is None or ts > last_ts:
                    last_ts, at_last = ts, {rid}
                elif ts == last_ts:
                    at_last.add(rid)
            if last_ts is not None and (newest is None or last_ts > newest):
                newest = last_ts
            nxt = ((resp.get("paging") or {}).get("next") or {}).get("after")
            if rows or not nxt:
                yield rows, newest
            if not nxt:
                finished = True
                break
            after = int(nxt)
            if after >= cap:
                break
        if finished:
            return
        if last_ts == lower and lower is not None:
            # A whole window at one timestamp: page through that instant by record id.
            async for rows in _walk_instant(
                search, hs_obj, lower, at_last, properties, groups, cap
            ):
                yield rows, newest
            op, skip = "GT", set()
            continue
        lower, op, skip = last_ts, "GTE", at_last


async def _walk_instant(
    search: SearchFn,
    hs_obj: str,
    instant: int,
    seen: set[str],
    properties: list[str],
    groups: list[list[Filter]],
    cap: int,
) -> AsyncIterator[list[dict[str, Any]]]:
    mod = MODIFIED[hs_obj]
    last_id = 0
    while True:
        after = 0
        while True:
            extra = [{"propertyName": mod, "operator": "EQ", "value": str(instant)}]
            if last_id:
                extra.append(
                    {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)}
                )
            limit = min(SEARCH_PAGE, cap - after)
            body = _body(groups, extra, "hs_object_id", properties, limit, after)
            resp = await search(hs_obj, body)
            rows = []
            top = last_id
            for row in resp.get("results") or []:
                top = max(top, int(row["id"]))
                if str(row["id"]) not in seen:
                    rows.append(row)
            if rows:
                yield rows
            nxt = ((resp.get("paging") or {}).get("next") or {}).get("after")
            if not nxt:
                return
            after = int(nxt)
            if after >= cap:
                last_id = top
                break
