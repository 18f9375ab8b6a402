"""Safe SOQL text: escaped literals, whitelisted field names and rules compiled to WHERE clauses.

SOQL has no bind parameters over REST, so every value goes through `quote` (or a typed literal
formatter) and every field name must pass `field_name`; nothing from a rule is spliced raw.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime

from syncd.rules import Condition, Group, Op, Rule, Scalar

_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_LIKE_ESCAPES = {"%": "\\%", "_": "\\_"}
_COMPARE = {Op.EQ: "=", Op.NE: "!=", Op.GT: ">", Op.GE: ">=", Op.LT: "<", Op.LE: "<="}


class SoqlBuildError(ValueError):
    """A rule cannot be expressed safely in SOQL (unknown field, bad value type)."""


def escape(value: str, *, like: bool = False) -> str:
    """The body of a SOQL string literal; with `like`, % and _ match only themselves."""
    table = {**_ESCAPES, **_LIKE_ESCAPES} if like else _ESCAPES
    return "".join(table.get(ch, ch) for ch in value)


def quote(value: str, *, like: bool = False) -> str:
    """A quoted, escaped SOQL string literal."""
    return f"'{escape(value, like=like)}'"


def field_name(name: str, allowed: Mapping[str, str] | None = None) -> str:
    """`name` if it is a plain field identifier (and in `allowed`, when given)."""
    if not _FIELD.match(name):
        raise SoqlBuildError(f"not a valid Salesforce field name: {name!r}")
    if allowed is not None:
        canonical = {k.lower(): k for k in allowed}.get(name.lower())
        if canonical is None:
            raise SoqlBuildError(f"unknown field: {name}")
        return canonical
    return name


def record_id(value: str) -> str:
    """A quoted record id after checking it looks like one."""
    if not _ID.match(value):
        raise SoqlBuildError(f"not a Salesforce id: {value!r}")
    return quote(value)


def datetime_literal(value: datetime) -> str:
    """A SOQL datetime literal in UTC: ``2024-05-01T10:00:00.000Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    v = value.astimezone(UTC)
    return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"


def whole_second(value: datetime) -> datetime:
    """`value` truncated to the second: Salesforce keeps datetimes (``SystemModstamp``
    among them) to the second and SOQL compares them so."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.replace(microsecond=0)


def date_literal(value: date) -> str:
    """A SOQL date literal: ``2024-05-01``."""
    return value.isoformat()


def _literal(value: Scalar, ftype: str | None) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise SoqlBuildError("numbers must be finite")
        if ftype in ("string", "email", "phone", "picklist", "textarea", "url", "id",
                     "reference"):  # fmt: skip
            return quote(str(value))
        return repr(value) if isinstance(value, float) else str(value)
    if ftype == "datetime":
        try:
            return datetime_literal(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            raise SoqlBuildError(f"not a datetime: {value!r}") from None
    if ftype == "date":
        try:
            return date_literal(date.fromisoformat(value))
        except ValueError:
            raise SoqlBuildError(f"not a date: {value!r}") from None
    if ftype in ("boolean", "double", "currency", "int", "percent"):
        raise SoqlBuildError(f"a {ftype} field needs a {ftype} value, not text")
    return quote(value)


def compile_rule(rule: Rule, field_types: Mapping[str, str] | None = None) -> str:
    """A SOQL boolean expression for `rule`; `field_types` ({name: type}) whitelists fields."""
    if isinstance(rule, Group):
        joiner = " AND " if rule.mode == "all" else " OR "
        return "(" + joiner.join(compile_rule(item, field_types) for item in rule.items) + ")"
    return _condition(rule, field_types)


def _condition(cond: Condition, field_types: Mapping[str, str] | None) -> str:
    name = field_name(cond.field, field_types)
    ftype = field_types.get(name) if field_types is not None else None
    op, value = cond.op, cond.value
    if op is Op.IS_NULL:
        return f"({name} = null)"
    if op is Op.IS_NOT_NULL:
        return f"({name} != null)"
    if op is Op.IN:
        assert isinstance(value, tuple)
        return f"({name} IN ({', '.join(_literal(v, ftype) for v in value)}))"
    if op in (Op.CONTAINS, Op.STARTS_WITH, Op.ENDS_WITH):
        if not isinstance(value, str):
            raise SoqlBuildError(f"{op.value} needs a string")
        body = escape(value, like=True)
        pattern = {
            Op.CONTAINS: f"%{body}%",
            Op.STARTS_WITH: f"{body}%",
            Op.ENDS_WITH: f"%{body}",
        }[op]
        return f"({name} LIKE '{pattern}')"
    if value is None or isinstance(value, tuple):
        raise SoqlBuildError(f"{op.value} needs a single value")
    return f"({name} {_COMPARE[op]} {_literal(value, ftype)})"
