"""Rule AST → SOQL compilation, checked against the simulator's SOQL evaluator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.rules import Condition, Group, Op, Rule, parse_rule
from syncd.sandbox.salesforce.soql import SoqlError, parse_query, run_query
from syncd.vendors.salesforce.soql import (
    SoqlBuildError,
    compile_rule,
    datetime_literal,
    escape,
    field_name,
    quote,
    record_id,
)

TYPES = {"Name": "string", "Amount": "currency", "Active": "boolean", "Stamp": "datetime"}


def schema(obj: str) -> dict[str, str] | None:
    return dict(TYPES) if obj == "Thing" else None


def select(rule: Rule, rows: list[dict[str, Any]]) -> list[Any]:
    q = parse_query(f"SELECT Name FROM Thing WHERE {compile_rule(rule, TYPES)}", schema)
    return [r["Name"] for r in run_query(q, rows)]


def test_escape_rules() -> None:
    assert escape("O'Brien") == "O\\'Brien"
    assert escape("a\\b") == "a\\\\b"
    assert escape('say "hi"\n\t') == 'say \\"hi\\"\\n\\t'
    assert escape("50%_off", like=True) == "50\\%\\_off"
    assert escape("50%_off") == "50%_off"
    assert quote("x' OR Name != '") == "'x\\' OR Name != \\''"


def test_compile_shapes() -> None:
    rule = parse_rule(
        {
            "all": [
                {"field": "Name", "op": "starts_with", "value": "A%"},
                {
                    "any": [
                        {"field": "Amount", "op": ">=", "value": 10},
                        {"field": "Name", "op": "is_null"},
                    ]
                },
                {"field": "Active", "op": "=", "value": True},
            ]
        }
    )
    assert compile_rule(rule, TYPES) == (
        "((Name LIKE 'A\\%%') AND ((Amount >= 10) OR (Name = null)) AND (Active = TRUE))"
    )
    assert compile_rule(Condition("Name", Op.IN, ("a", "b'")), TYPES) == "(Name IN ('a', 'b\\''))"
    assert compile_rule(Condition("Stamp", Op.GT, "2024-05-01T10:00:00+02:00"), TYPES) == (
        "(Stamp > 2024-05-01T08:00:00.000Z)"
    )


@pytest.mark.parametrize(
    "bad",
    ["Name) OR (Id", "Name = 'x'", "", "1Name", "Na me", "Name--", "x" * 81],
)
def test_field_names_are_whitelisted(bad: str) -> None:
    with pytest.raises(SoqlBuildError):
        field_name(bad)


def test_unknown_field_and_wrong_types_are_refused() -> None:
    with pytest.raises(SoqlBuildError):
        compile_rule(Condition("Other__c", Op.EQ, "x"), TYPES)
    with pytest.raises(SoqlBuildError):
        compile_rule(Condition("Amount", Op.EQ, "10; DELETE"), TYPES)
    with pytest.raises(SoqlBuildError):
        compile_rule(Condition("Stamp", Op.GT, "yesterday' OR '1'='1"), TYPES)
    with pytest.raises(SoqlBuildError):
        record_id("003' OR Id != '")
    assert field_name("name", TYPES) == "Name"


def test_datetime_literal_is_utc_with_millis() -> None:
    assert datetime_literal(datetime(2024, 1, 2, 3, 4, 5, 678900, tzinfo=UTC)) == (
        "2024-01-02T03:04:05.678Z"
    )


text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(target=text, others=st.lists(text, max_size=6))
def test_equality_matches_exactly_the_intended_rows(target: str, others: list[str]) -> None:
    rows = [{"Name": v} for v in [target, *others]]
    got = select(Condition("Name", Op.EQ, target), rows)
    assert got == [v for v in [target, *others] if v.lower() == target.lower()]


@settings(max_examples=150, deadline=None)
@given(needle=text, hay=st.lists(text, max_size=6))
def test_like_operators_treat_wildcards_literally(needle: str, hay: list[str]) -> None:
    rows = [{"Name": v} for v in hay]
    low = needle.lower()
    assert select(Condition("Name", Op.CONTAINS, needle), rows) == [
        v for v in hay if low in v.lower()
    ]
    assert select(Condition("Name", Op.STARTS_WITH, needle), rows) == [
        v for v in hay if v.lower().startswith(low)
    ]
    assert select(Condition("Name", Op.ENDS_WITH, needle), rows) == [
        v for v in hay if v.lower().endswith(low)
    ]


def test_group_any_and_evaluator_requires_parentheses() -> None:
    rows = [{"Name": n, "Amount": a} for n, a in [("a", 1.0), ("b", 20.0), ("c", None)]]
    rule = Group("any", (Condition("Name", Op.EQ, "a"), Condition("Amount", Op.GT, 10)))
    assert select(rule, rows) == ["a", "b"]
    with pytest.raises(SoqlError) as info:
        parse_query("SELECT Name FROM Thing WHERE Name = 'a' AND Name = 'b' OR Name = 'c'", schema)
    assert info.value.code == "MALFORMED_QUERY"
