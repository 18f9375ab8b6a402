"""Compile the rule AST (syncd.rules) into a parameterized MySQL/MariaDB WHERE clause.

Guarantees:

* Identifiers come only from the caller's whitelist of real columns (matched
  case-insensitively, like MySQL does) and are backtick-quoted; every value is a ``%s``
  placeholder bound by the driver. No value ever appears in the SQL text.
* The SQL is meant for pyformat drivers (aiomysql/PyMySQL) and must be executed *with* an
  argument list (possibly empty): a ``%`` in an identifier is written as ``%%``.

Operator semantics:

* ``=``, ``>``, ``>=``, ``<``, ``<=``, ``in``, ``contains``, ``starts_with``, ``ends_with``
  never match a NULL column (SQL three-valued logic).
* ``!=`` is NULL-safe: a NULL column is "not equal" to any value and matches. It compiles to
  ``NOT (col <=> %s)``, so ``country != "US"`` also selects rows with no country, which is
  what a person writing the rule expects (and how Python evaluates ``None != "US"``).
* ``contains``/``starts_with``/``ends_with`` use ``LIKE`` with the value's ``%``, ``_`` and the
  escape character ``!`` escaped, and an explicit ``ESCAPE '!'``. A backslash is an ordinary
  character under that clause, so it needs no escaping; ``!`` (rather than ``\\``) keeps the
  SQL valid whether or not the server runs with ``NO_BACKSLASH_ESCAPES``. Case sensitivity
  follows the column's collation.
* Numbers compared with a text column are bound as strings, so ``email = 0`` cannot turn into
  MySQL's numeric comparison that matches every non-numeric string.
* No rule compiles to ``TRUE``; an empty ``all`` group to ``TRUE`` and an empty ``any`` to
  ``FALSE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from syncd.errors import ConfigError
from syncd.rules import UNARY_OPS, Condition, Group, Op, Rule, RuleError

LIKE_ESCAPE = "!"
_COMPARISONS = {Op.EQ: "=", Op.GT: ">", Op.GE: ">=", Op.LT: "<", Op.LE: "<="}
_LIKE_OPS = frozenset({Op.CONTAINS, Op.STARTS_WITH, Op.ENDS_WITH})
_TEXT_TYPES = frozenset(
    {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json"}
)
_BINDABLE = (str, int, float, Decimal, datetime, date, time, timedelta, bytes)


class RuleColumnError(ConfigError, RuleError):
    """A rule names a column the table does not have."""


class RuleOperatorError(ConfigError, RuleError):
    """A rule uses an operator (or a value) the SQL compiler does not allow."""


def quote_ident(name: str) -> str:
    """Backtick-quote an identifier for a pyformat query (backticks doubled, ``%`` as ``%%``)."""
    return "`" + name.replace("`", "``").replace("%", "%%") + "`"


def escape_like(value: str) -> str:
    """Make `value` match literally inside a LIKE pattern that uses ``ESCAPE '!'``."""
    return (
        value.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


def is_text_type(sql_type: str) -> bool:
    """Whether a column type (``varchar``, ``varchar(255)``, ``TEXT`` …) holds strings."""
    base = sql_type.strip().lower().split("(", 1)[0].split(" ", 1)[0]
    return base in _TEXT_TYPES


def compile_where(rule: Rule | None, columns: Mapping[str, str]) -> tuple[str, list[Any]]:
    """Compile `rule` against `columns` (real name → SQL type) into ``(sql, params)``."""
    if rule is None:
        return "TRUE", []
    lookup = {name.lower(): (name, typ) for name, typ in columns.items()}
    params: list[Any] = []
    sql = _compile(rule, lookup, columns, params)
    return sql, params


def _compile(
    rule: Rule,
    lookup: Mapping[str, tuple[str, str]],
    columns: Mapping[str, str],
    params: list[Any],
) -> str:
    if isinstance(rule, Group):
        if rule.mode not in ("all", "any"):
            raise RuleOperatorError(f"unknown group mode {rule.mode!r}; use 'all' or 'any'")
        if not rule.items:
            return "TRUE" if rule.mode == "all" else "FALSE"
        joiner = " AND " if rule.mode == "all" else " OR "
        return "(" + joiner.join(_compile(it, lookup, columns, params) for it in rule.items) + ")"
    if isinstance(rule, Condition):
        return _condition(rule, lookup, columns, params)
    raise RuleOperatorError(f"not a rule: {type(rule).__name__}")


def _condition(
    cond: Condition,
    lookup: Mapping[str, tuple[str, str]],
    columns: Mapping[str, str],
    params: list[Any],
) -> str:
    found = lookup.get(str(cond.field).lower())
    if found is None:
        have = ", ".join(columns) or "(no columns)"
        raise RuleColumnError(f"unknown column {cond.field!r} in rules; the table has: {have}")
    name, typ = found
    try:
        op = Op(cond.op)
    except ValueError:
        allowed = ", ".join(o.value for o in Op)
        raise RuleOperatorError(
            f"unknown operator {cond.op!r} on column {name!r}; use one of {allowed}"
        ) from None
    col = quote_ident(name)
    text = is_text_type(typ)
    if op in UNARY_OPS:
        return f"{col} IS NULL" if op is Op.IS_NULL else f"{col} IS NOT NULL"
    if op is Op.IN:
        values = cond.value
        if not isinstance(values, tuple | list) or not values:
            raise RuleOperatorError(f"'in' on column {name!r} needs a non-empty list")
        params.extend(_bind(v, name, text) for v in values)
        return f"{col} IN (" + ", ".join(["%s"] * len(values)) + ")"
    value = _bind(cond.value, name, text)
    if op in _LIKE_OPS:
        if not isinstance(value, str):
            raise RuleOperatorError(f"{op.value} on column {name!r} needs a string value")
        pattern = escape_like(value)
        if op is Op.CONTAINS:
            pattern = f"%{pattern}%"
        elif op is Op.STARTS_WITH:
            pattern = f"{pattern}%"
        else:
            pattern = f"%{pattern}"
        params.append(pattern)
        return f"{col} LIKE %s ESCAPE '{LIKE_ESCAPE}'"
    params.append(value)
    if op is Op.NE:
        return f"NOT ({col} <=> %s)"
    return f"{col} {_COMPARISONS[op]} %s"


def _bind(value: Any, column: str, text_column: bool) -> Any:
    """The driver parameter for one rule value, checked and coerced to the column's kind."""
    if value is None or isinstance(value, tuple | list | dict | set):
        what = "NULL" if value is None else type(value).__name__
        raise RuleOperatorError(
            f"column {column!r}: a {what} value is not allowed here (use is_null / is_not_null)"
        )
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, _BINDABLE):
        raise RuleOperatorError(
            f"column {column!r}: values must be strings, numbers, booleans or dates, "
            f"not {type(value).__name__}"
        )
    if text_column and isinstance(value, int | float | Decimal):
        return str(value)
    return value
