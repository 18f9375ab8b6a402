"""A small SOQL parser and evaluator for the Salesforce simulator.

Supports ``SELECT f, ... FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST]]
[LIMIT n]`` with AND/OR/NOT, parentheses, ``= != <> < > <= >=``, LIKE, IN/NOT IN, NULL,
TRUE/FALSE, date and datetime literals and quoted strings with SOQL escapes. Like the real
parser it refuses AND and OR mixed at one level without parentheses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

Value = str | int | float | bool | date | datetime | None
Predicate = Callable[[Mapping[str, Any]], bool]


class SoqlError(Exception):
    """A query the real API would refuse; `code` is MALFORMED_QUERY or INVALID_FIELD."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Query:
    """A parsed query: canonical field names, object, filter, order and limit."""

    fields: tuple[str, ...]
    obj: str
    where: Predicate | None
    order_by: str | None
    descending: bool
    nulls_last: bool
    limit: int | None


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
     |(?P<date>\d{4}-\d{2}-\d{2})
     |(?P<num>-?\d+(?:\.\d+)?)
     |(?P<str>'(?:[^'\\]|\\.)*')
     |(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)
     |(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
}
_KEYWORDS = {
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "LIKE", "IN", "NULL", "TRUE", "FALSE",
    "ORDER", "BY", "ASC", "DESC", "LIMIT", "NULLS", "FIRST", "LAST",
}  # fmt: skip


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    value: Any = None


def _unescape(body: str, *, like: bool) -> str:
    """The value of a string literal; with `like`, a regex source (wildcards resolved)."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                lit = _ESCAPES[nxt]
            elif nxt in "%_":
                lit = nxt  # an escaped wildcard matches itself
            else:
                raise SoqlError("MALFORMED_QUERY", f"Invalid string literal escape \\{nxt}")
            out.append(re.escape(lit) if like else lit)
            i += 2
            continue
        if ch == "\\":
            raise SoqlError("MALFORMED_QUERY", "unterminated escape in string literal")
        if like and ch in "%_":
            out.append(".*" if ch == "%" else ".")
        else:
            out.append(re.escape(ch) if like else ch)
        i += 1
    return "".join(out)


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token at position {pos}")
        pos = m.end()
        kind = m.lastgroup or ""
        raw = m.group(kind)
        if kind == "ident" and raw.upper() in _KEYWORDS:
            toks.append(_Tok("kw", raw.upper()))
        else:
            toks.append(_Tok(kind, raw))
    return toks


def parse_datetime(raw: str) -> datetime:
    """A SOQL/ISO datetime literal (``Z``, ``+00:00`` or ``+0000``) as an aware datetime."""
    s = raw.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", s):
        s = s[:-2] + ":" + s[-2:]
    return datetime.fromisoformat(s).astimezone(UTC)


class _Parser:
    def __init__(self, text: str, schema: Callable[[str], Mapping[str, str] | None]) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.schema = schema
        self.types: Mapping[str, str] = {}
        self.lower: dict[str, str] = {}

    def peek(self, k: int = 0) -> _Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def is_kw(self, word: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t is not None and t.kind == "kw" and t.text == word

    def next(self) -> _Tok:
        t = self.peek()
        if t is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        self.i += 1
        return t

    def expect_kw(self, word: str) -> None:
        t = self.next()
        if t.kind != "kw" or t.text != word:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{t.text}'")

    def expect_op(self, op: str) -> None:
        t = self.next()
        if t.kind != "op" or t.text != op:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{t.text}'")

    def ident(self) -> str:
        t = self.next()
        if t.kind != "ident":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{t.text}'")
        return t.text

    def field(self, obj: str) -> str:
        name = self.ident()
        canonical = self.lower.get(name.lower())
        if canonical is None:
            raise SoqlError(
                "INVALID_FIELD",
                f"No such column '{name}' on entity '{obj}'. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
            )
        return canonical

    def parse(self) -> Query:
        self.expect_kw("SELECT")
        raw_fields = [self.ident()]
        while self.peek() is not None and self.peek() == _Tok("op", ","):
            self.next()
            raw_fields.append(self.ident())
        self.expect_kw("FROM")
        obj_raw = self.ident()
        types = self.schema(obj_raw)
        if types is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"sObject type '{obj_raw}' is not supported. If you are attempting to use a "
                "custom object, be sure to append the '__c' after the entity name.",
            )
        self.types = types
        self.lower = {k.lower(): k for k in types}
        obj = obj_raw
        fields: list[str] = []
        for f in raw_fields:
            c = self.lower.get(f.lower())
            if c is None:
                raise SoqlError("INVALID_FIELD", f"No such column '{f}' on entity '{obj}'.")
            if c in fields:
                raise SoqlError("MALFORMED_QUERY", f"duplicate field selected: {c}")
            fields.append(c)
        where: Predicate | None = None
        if self.is_kw("WHERE"):
            self.next()
            where = self.expr(obj)
        order_by, desc, nulls_last = None, False, False
        if self.is_kw("ORDER"):
            self.next()
            self.expect_kw("BY")
            order_by = self.field(obj)
            if self.is_kw("ASC") or self.is_kw("DESC"):
                desc = self.next().text == "DESC"
            nulls_last = desc
            if self.is_kw("NULLS"):
                self.next()
                t = self.next()
                if t.text not in ("FIRST", "LAST"):
                    raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{t.text}'")
                nulls_last = t.text == "LAST"
        limit: int | None = None
        if self.is_kw("LIMIT"):
            self.next()
            t = self.next()
            if t.kind != "num" or not t.text.isdigit():
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{t.text}'")
            limit = int(t.text)
        if self.peek() is not None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{self.next().text}'")
        return Query(tuple(fields), obj, where, order_by, desc, nulls_last, limit)

    def expr(self, obj: str) -> Predicate:
        first = self.unary(obj)
        joiner: str | None = None
        parts = [first]
        while self.is_kw("AND") or self.is_kw("OR"):
            word = self.next().text
            if joiner is not None and word != joiner:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{word}' (use parentheses)")
            joiner = word
            parts.append(self.unary(obj))
        if joiner is None:
            return first
        if joiner == "AND":
            return lambda r: all(p(r) for p in parts)
        return lambda r: any(p(r) for p in parts)

    def unary(self, obj: str) -> Predicate:
        if self.is_kw("NOT"):
            self.next()
            inner = self.unary(obj)
            return lambda r: not inner(r)
        if self.peek() == _Tok("op", "("):
            self.next()
            inner = self.expr(obj)
            self.expect_op(")")
            return inner
        return self.comparison(obj)

    def comparison(self, obj: str) -> Predicate:
        name = self.field(obj)
        ftype = self.types[name]
        if self.is_kw("LIKE"):
            self.next()
            t = self.next()
            if t.kind != "str":
                raise SoqlError("MALFORMED_QUERY", "LIKE needs a quoted string")
            pat = re.compile(_unescape(t.text[1:-1], like=True), re.IGNORECASE | re.DOTALL)
            return lambda r: isinstance(r.get(name), str) and bool(pat.fullmatch(r[name]))
        negate = False
        if self.is_kw("NOT") and self.is_kw("IN", 1):
            self.next()
            negate = True
        if self.is_kw("IN"):
            self.next()
            self.expect_op("(")
            values = [self.literal(name, ftype)]
            while self.peek() == _Tok("op", ","):
                self.next()
                values.append(self.literal(name, ftype))
            self.expect_op(")")
            keys = {_key(v) for v in values}
            if negate:
                return lambda r: _key(r.get(name)) not in keys
            return lambda r: _key(r.get(name)) in keys
        t = self.next()
        if t.kind != "op" or t.text not in ("=", "!=", "<>", "<", ">", "<=", ">="):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{t.text}'")
        op = "!=" if t.text == "<>" else t.text
        value = self.literal(name, ftype)
        return _compare(name, op, value)

    def literal(self, name: str, ftype: str) -> Value:
        t = self.next()
        if t.kind == "kw" and t.text == "NULL":
            return None
        if t.kind == "kw" and t.text in ("TRUE", "FALSE"):
            if ftype != "boolean":
                raise _type_error(name, ftype)
            return t.text == "TRUE"
        if t.kind == "str":
            if ftype in ("datetime", "date", "boolean", "double", "currency", "int"):
                raise _type_error(name, ftype)
            return _unescape(t.text[1:-1], like=False)
        if t.kind == "dt":
            if ftype != "datetime":
                raise _type_error(name, ftype)
            # SOQL compares datetimes to the second: a literal's milliseconds are ignored
            # (`SystemModstamp >= …:07.900Z` matches a record stamped …:07.000Z;
            # salesforce.stackexchange.com/questions/234824 "Using SystemModstamp and a
            # timestamp to implement incremental data fetch").
            return whole_second(parse_datetime(t.text))
        if t.kind == "date":
            if ftype != "date":
                raise _type_error(name, ftype)
            return date.fromisoformat(t.text)
        if t.kind == "num":
            if ftype not in ("double", "currency", "int"):
                raise _type_error(name, ftype)
            return float(t.text)
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{t.text}'")


def _type_error(name: str, ftype: str) -> SoqlError:
    quoted = ftype not in ("datetime", "date", "boolean", "double", "currency", "int")
    how = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
    kind = {"datetime": "dateTime"}.get(ftype, ftype)
    return SoqlError(
        "INVALID_FIELD",
        f"value of filter criterion for field '{name}' must be of type {kind} and {how}",
    )


def _key(v: Any) -> Any:
    # SOQL text comparisons are case-insensitive.
    return v.lower() if isinstance(v, str) else v


def _compare(name: str, op: str, value: Value) -> Predicate:
    if value is None:
        if op == "=":
            return lambda r: r.get(name) is None
        if op == "!=":
            return lambda r: r.get(name) is not None
        raise SoqlError("MALFORMED_QUERY", f"cannot compare {name} {op} null")
    want = _key(value)

    def pred(r: Mapping[str, Any]) -> bool:
        have = r.get(name)
        if have is None:
            return op == "!="
        h = _key(have)
        if op == "=":
            return bool(h == want)
        if op == "!=":
            return bool(h != want)
        try:
            if op == "<":
                return bool(h < want)
            if op == ">":
                return bool(h > want)
            if op == "<=":
                return bool(h <= want)
            return bool(h >= want)
        except TypeError:
            return False

    return pred


def parse_query(text: str, schema: Callable[[str], Mapping[str, str] | None]) -> Query:
    """Parse `text`; `schema(obj)` returns {canonical field: type} or None for unknown objects."""
    return _Parser(text, schema).parse()


def run_query(q: Query, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Filter, order and limit `rows` as the query says."""
    out = [r for r in rows if q.where is None or q.where(r)]
    if q.order_by is not None:
        key = q.order_by
        present = [r for r in out if r.get(key) is not None]
        missing = [r for r in out if r.get(key) is None]
        present.sort(key=lambda r: _key(r[key]), reverse=q.descending)
        out = present + missing if q.nulls_last else missing + present
    if q.limit is not None:
        out = out[: q.limit]
    return out


def whole_second(value: datetime) -> datetime:
    """`value` as Salesforce stores a datetime: whole seconds (the API renders ``.000``)."""
    return value.replace(microsecond=0)


def now_utc() -> datetime:
    """The current time, aware, truncated to the second as Salesforce stores it: the
    ``SystemModstamp`` of records saved within one second are equal, and the API always
    renders ``.000`` (salesforce.stackexchange.com/questions/234824)."""
    return whole_second(datetime.now(UTC))
