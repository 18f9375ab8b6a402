"""dbsync rules with every operator, and hostile values in rules and in the source columns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from syncd.model import RunTrigger
from tests.integration.dbsync_support import Env, env

__all__ = ["env"]

HOSTILE = [
    "O'Brien",
    'say "hi"',
    "back\\slash\\",
    "'; DROP TABLE people; --",
    "x' OR '1'='1",
    "100% _wild_",
    "emoji 🙂🚀 𝕏",
    "new\nline\ttab",
    "!escape!",
]
# (id, email, first_name, last_name, company, tag_list, score, country)
RULE_ROWS: list[tuple[Any, ...]] = [
    (1, "r1@example.com", "Ann", "A", None, None, 10, "US"),
    (2, "r2@example.com", "Bob", "B", None, None, 20, "DE"),
    (3, "r3@example.com", "Cy", "C", None, None, None, None),
    (4, "r4@example.com", "Di", "D", None, None, 30, "us"),
    (5, "r5@example.com", "O'Brien", "E", None, None, 40, "100% _wild_"),
    (6, "r6@example.com", "back\\slash\\", "F", None, None, -5, "emoji 🙂🚀 𝕏"),
    (7, "r7@example.com", "'; DROP TABLE people; --", "G", None, None, 0, "x' OR '1'='1"),
]
COLS = ("id", "email", "first_name", "last_name", "company", "tag_list", "score", "country")


def _where(pred: Callable[[dict[str, Any]], bool]) -> set[int]:
    out = set()
    for row in RULE_ROWS:
        r = dict(zip(COLS, row, strict=True))
        if pred(r):
            out.add(int(r["id"]))
    return out


def _s(v: Any) -> str:
    return "" if v is None else str(v)


CASES: list[tuple[dict[str, Any], set[int]]] = [
    ({"field": "score", "op": "=", "value": 20}, {2}),
    ({"field": "country", "op": "!=", "value": "US"}, _where(lambda r: r["country"] != "US")),
    ({"field": "score", "op": ">", "value": 10}, {2, 4, 5}),
    ({"field": "score", "op": ">=", "value": 10}, {1, 2, 4, 5}),
    ({"field": "score", "op": "<", "value": 10}, {6, 7}),
    ({"field": "score", "op": "<=", "value": 10}, {1, 6, 7}),
    ({"field": "country", "op": "contains", "value": "% _"}, {5}),
    ({"field": "first_name", "op": "starts_with", "value": "O'"}, {5}),
    ({"field": "first_name", "op": "ends_with", "value": "\\"}, {6}),
    ({"field": "score", "op": "is_null"}, {3}),
    ({"field": "country", "op": "is_not_null"}, {1, 2, 4, 5, 6, 7}),
    ({"field": "country", "op": "in", "value": ["US", "DE", "x' OR '1'='1"]}, {1, 2, 7}),
    (
        {
            "any": [
                {"field": "score", "op": ">=", "value": 40},
                {
                    "all": [
                        {"field": "country", "op": "=", "value": "US"},
                        {"field": "score", "op": "=", "value": 10},
                    ]
                },
            ]
        },
        {1, 5},
    ),
    # Hostile rule values are data, never SQL.
    ({"field": "country", "op": "=", "value": "x' OR '1'='1"}, {7}),
    ({"field": "first_name", "op": "=", "value": "'; DROP TABLE people; --"}, {7}),
    ({"field": "country", "op": "contains", "value": "🙂🚀"}, {6}),
    ({"field": "country", "op": "contains", "value": "%"}, {5}),
    ({"field": "country", "op": "contains", "value": "_"}, {5}),
    ({"field": "first_name", "op": "contains", "value": "\\"}, {6}),
    ({"field": "first_name", "op": "=", "value": "x" * 10_000}, set()),
    ({"field": "email", "op": "=", "value": 0}, set()),
]


@pytest.mark.parametrize(("rule", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
async def test_rules_select_exactly_the_matching_rows(
    env: Env, rule: dict[str, Any], expected: set[int]
) -> None:
    await env.insert(RULE_ROWS)
    before = await env.checksum()
    report = await env.runner.test(env.cfg(rules=rule))
    assert report.status == "succeeded", report.error
    assert report.counts["rows_read"] == report.counts["total"] == len(expected)
    assert report.counts["new"] == len(expected)
    assert await env.checksum() == before
    assert env.write_requests() == 0


async def test_a_rule_decides_exact_hub_state(env: Env) -> None:
    await env.insert(RULE_ROWS)
    before = await env.checksum()
    rule = {"field": "country", "op": "in", "value": ["US", "DE"]}
    report = await env.runner.run(env.cfg(rules=rule), RunTrigger.MANUAL)
    assert report.counts["created"] == 2
    synced = {c.email for c in env.sb.contacts.values()}
    assert synced == {"r1@example.com", "r2@example.com"}
    assert await env.checksum() == before


async def test_hostile_column_values_are_carried_or_rejected_cleanly(env: Env) -> None:
    huge = "é" * 10_000
    rows: list[tuple[Any, ...]] = []
    for i, text in enumerate(HOSTILE, start=1):
        rows.append((i, f"h{i}@example.com", text, text[:255], text, f"{text};  ; t{i}"))
    rows.append((50, "nulls@example.com", None, None, None, None))
    rows.append((51, "huge@example.com", "Huge", None, huge, None))  # custom field: no limit
    rows.append((52, "toolong@example.com", "y" * 10_000, None, None, None))
    rows.append((53, "badtag@example.com", "T", None, None, "z" * 10_000))
    # Enough 10,000-character rows that one 250-row call would exceed AC's 400 kB body limit.
    rows += [(100 + i, f"big{i}@example.com", "Big", None, huge, None) for i in range(40)]
    await env.insert(rows)
    before = await env.checksum()
    report = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert report.status == "succeeded", report.error
    assert report.counts["failed"] == 2, await env.store.run_failures(report.run_id)
    assert report.counts["created"] == len(rows) - 2
    for i, text in enumerate(HOSTILE, start=1):
        c = env.contact(f"h{i}@example.com")
        assert c is not None, text
        assert c.first_name == text and env.company(f"h{i}@example.com") == text
        tags = {t.strip() for t in text.replace(";", ",").split(",") if t.strip()}
        assert env.tags(f"h{i}@example.com") == tags | {f"t{i}"}
    nulls = env.contact("nulls@example.com")
    assert nulls is not None and nulls.first_name == "" and env.tags("nulls@example.com") == set()
    assert env.company("huge@example.com") == huge
    assert all(env.company(f"big{i}@example.com") == huge for i in range(40))
    failures = {f.key: f for f in await env.store.run_failures(report.run_id)}
    assert "too long" in failures["52"].reason and failures["52"].columns == ("first_name",)
    assert "tag too long" in failures["53"].reason and failures["53"].columns == ("tag_list",)
    assert env.contact("toolong@example.com") is None
    assert await env.checksum() == before
    # And nothing is sent again: every value round-trips to the same hash.
    env.sb.reset()
    again = await env.runner.run(env.cfg(), RunTrigger.MANUAL)
    assert again.counts["unchanged"] == len(rows) - 2 and env.write_requests() == 0
    assert await env.checksum() == before
