"""User-written selection rules as a small AST; compiled elsewhere to parameterized queries.

Config form: a condition is ``{field = "id", op = ">", value = 1}`` (``column`` is accepted as
an alias of ``field``); a group is ``{all = [...]}`` (AND) or ``{any = [...]}`` (OR).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal


class Op(StrEnum):
    """Whitelisted comparison operators."""

    EQ = "="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    IS_NULL = "is_null"
    IS_NOT_NULL = "is_not_null"
    IN = "in"


UNARY_OPS = frozenset({Op.IS_NULL, Op.IS_NOT_NULL})
Scalar = str | int | float | bool


@dataclass(frozen=True)
class Condition:
    """``field op value``; value is None for the unary operators and a tuple for ``in``."""

    field: str
    op: Op
    value: Scalar | tuple[Scalar, ...] | None = None


@dataclass(frozen=True)
class Group:
    """Conditions or groups joined by AND (``all``) or OR (``any``)."""

    mode: Literal["all", "any"]
    items: tuple[Rule, ...]


Rule = Condition | Group


class RuleError(ValueError):
    """A rule is malformed; the message names the offending part."""


def parse_rule(raw: Any, path: str = "rules") -> Rule:
    """Turn the config form of a rule into the AST, or raise RuleError naming the bad part."""
    if not isinstance(raw, Mapping):
        raise RuleError(f"{path}: must be a table with field/op/value, or all/any")
    if "all" in raw or "any" in raw:
        if len(raw) != 1:
            raise RuleError(f"{path}: a group has exactly one key, 'all' or 'any'")
        mode: Literal["all", "any"] = "all" if "all" in raw else "any"
        items = raw[mode]
        if not isinstance(items, Sequence) or isinstance(items, str) or not items:
            raise RuleError(f"{path}.{mode}: must be a non-empty list of rules")
        return Group(
            mode, tuple(parse_rule(it, f"{path}.{mode}[{i}]") for i, it in enumerate(items))
        )
    field = raw.get("field", raw.get("column"))
    if not isinstance(field, str) or not field:
        raise RuleError(f"{path}.field: required, the name of a column or field")
    extra = set(raw) - {"field", "column", "op", "value"}
    if extra:
        raise RuleError(f"{path}: unknown key(s) {', '.join(sorted(extra))}")
    try:
        op = Op(str(raw.get("op")))
    except ValueError:
        allowed = ", ".join(o.value for o in Op)
        raise RuleError(
            f"{path}.op: unknown operator {raw.get('op')!r}; use one of {allowed}"
        ) from None
    value = raw.get("value")
    if op in UNARY_OPS:
        if value is not None:
            raise RuleError(f"{path}.value: {op.value} takes no value")
        return Condition(field, op, None)
    if op is Op.IN:
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            raise RuleError(f"{path}.value: 'in' needs a non-empty list")
        if not all(isinstance(v, Scalar) for v in value):
            raise RuleError(f"{path}.value: list items must be strings, numbers or booleans")
        return Condition(field, op, tuple(value))
    if not isinstance(value, Scalar):
        raise RuleError(f"{path}.value: required, a string, number or boolean")
    if op in (Op.CONTAINS, Op.STARTS_WITH, Op.ENDS_WITH) and not isinstance(value, str):
        raise RuleError(f"{path}.value: {op.value} needs a string")
    return Condition(field, op, value)


def rule_fields(rule: Rule) -> Iterator[str]:
    """Every field name the rule refers to (for validation against real columns)."""
    if isinstance(rule, Condition):
        yield rule.field
    else:
        for item in rule.items:
            yield from rule_fields(item)
