"""Per-row logic of dbsync: the compiled column plan, mapping a source row to hub fields,
validation and the content hash that makes unchanged rows free.

Pure functions over tuples from the source; no I/O.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from json.encoder import encode_basestring
from typing import Any, NamedTuple, Protocol

from syncd.config import DbsyncSettings
from syncd.emails import is_valid_normal_email
from syncd.errors import ConfigError
from syncd.jsontext import compact_encoder
from syncd.model import FieldInfo, new_named_tuple
from syncd.rules import rule_fields

TAGS = "tags"
TAG_MAX = 255  # ActiveCampaign's tag name column; HubSpot option labels are shorter still
_TAG_SPLIT = re.compile(r"[,;]")
# The hash's JSON text (compact, UTF-8 kept), with the C encoder built once.
_hash_encode = compact_encoder(ensure_ascii=False, default=None)
_quote = encode_basestring  # a string as _hash_encode writes it (C)
# Bump when map_row gives another result for the same values and plan: stored source
# fingerprints then stop matching and every row is mapped and compared once more.
_MAPPING_VERSION = "1"


class SourceColumn(Protocol):
    """What the plan needs to know about a source column."""

    @property
    def name(self) -> str:
        """The real column name."""

    @property
    def type(self) -> str:
        """The SQL data type."""


@dataclass(frozen=True)
class RowProblem:
    """Why one source row cannot be written: the column(s) involved and the reason."""

    columns: tuple[str, ...]
    reason: str
    code: str


class MappedRow(NamedTuple):
    """One source row as hub values: its key, normalised email and the fields to write.

    A named tuple: every changed source row makes one (cheaper than a frozen dataclass)."""

    key: str
    email: str  # lower-cased, trimmed: the match key
    fields: Mapping[str, str]  # hub field -> value (email included, as given)
    tags: tuple[str, ...]
    problems: tuple[RowProblem, ...] = ()


@dataclass(frozen=True)
class RowPlan:
    """The config compiled against the table's real columns and the hub's fields."""

    columns: tuple[str, ...]  # real column names, in SELECT order
    key_pos: int
    email_pos: int
    email_column: str
    key_column: str
    fields: tuple[tuple[int, str, str], ...]  # (position, column, hub field), email excluded
    tags_pos: int | None
    tags_column: str | None
    limits: Mapping[str, int]
    required: frozenset[str]
    list_id: str
    # A NULL or empty mapped value is sent as "" (clearing the hub field) rather than left out.
    null_clears: bool = False

    # `fields` with each hub field's length limit (sys.maxsize for none): what map_row checks
    # for every row, without a lookup per field. Derived here, never passed in.
    checked: tuple[tuple[int, str, str, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        limits = self.limits
        checked = tuple((i, col, hub, limits.get(hub, sys.maxsize)) for i, col, hub in self.fields)
        object.__setattr__(self, "checked", checked)


def build_plan(
    cfg: DbsyncSettings, columns: Sequence[SourceColumn], hub_fields: Sequence[FieldInfo]
) -> RowPlan:
    """Check mapping, key and rules against the real columns and hub fields; ConfigError names
    the first unknown column or field."""
    real = {c.name.lower(): c.name for c in columns}
    have = ", ".join(c.name for c in columns) or "(no columns)"

    def resolve(col: str, what: str) -> str:
        found = real.get(col.lower())
        if found is None:
            raise ConfigError(
                f"dbsync {cfg.name}: {what} names unknown column {col!r} in table "
                f"{cfg.table!r}; it has: {have}"
            )
        return found

    key_col = resolve(cfg.key_column, "key_column")
    if cfg.rules is not None:
        for name in rule_fields(cfg.rules):
            resolve(name, "rules")
    hub_by_lower = {f.name.lower(): f for f in hub_fields}
    order: list[str] = [key_col]
    pos: dict[str, int] = {key_col: 0}

    def position(col: str) -> int:
        if col not in pos:
            pos[col] = len(order)
            order.append(col)
        return pos[col]

    email_pos, email_col = -1, ""
    tags_pos: int | None = None
    tags_col: str | None = None
    mapped: list[tuple[int, str, str]] = []
    limits: dict[str, int] = {}
    required = {"email"}
    for col, hub in cfg.mapping.items():
        rc = resolve(col, "mapping")
        if hub == TAGS:
            tags_pos, tags_col = position(rc), rc
            continue
        info = hub_by_lower.get(hub.lower())
        if info is None:
            known = ", ".join(f.name for f in hub_fields)
            raise ConfigError(
                f"dbsync {cfg.name}: mapping {col!r} -> {hub!r}: the hub has no contact field "
                f"{hub!r}; it has: {known}"
            )
        if info.max_length:
            limits[info.name] = info.max_length
        if info.name == "email":
            email_pos, email_col = position(rc), rc
            continue
        mapped.append((position(rc), rc, info.name))
    for f in hub_fields:
        # Fields the hub requires on create must come from the table (email always does).
        if f.required and any(m[2] == f.name for m in mapped):
            required.add(f.name)
    return RowPlan(
        columns=tuple(order),
        key_pos=0,
        email_pos=email_pos,
        email_column=email_col,
        key_column=key_col,
        fields=tuple(mapped),
        tags_pos=tags_pos,
        tags_column=tags_col,
        limits=limits,
        required=frozenset(required),
        list_id=cfg.list,
        null_clears=cfg.null_clears,
    )


def as_text(value: Any) -> str:
    """A source value as the text the hub receives."""
    if type(value) is str:  # the common case first: an exact type check is cheapest
        return value
    if type(value) is int:  # keys
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def parse_tags(raw: Any) -> tuple[str, ...]:
    """Comma/semicolon separated tags, trimmed, empties dropped, first spelling kept."""
    if raw is None:
        return ()
    text = raw if type(raw) is str else as_text(raw)
    if "," not in text and ";" not in text:  # one tag or none: most rows
        tag = text.strip()
        return (tag,) if tag else ()
    seen: dict[str, str] = {}
    for part in _TAG_SPLIT.split(text):
        tag = part.strip()
        if tag:
            seen.setdefault(tag.lower(), tag)
    return tuple(seen.values())


def key_and_email(plan: RowPlan, row: Sequence[Any]) -> tuple[str, str, str]:
    """A source row's key, its email as given (trimmed) and normalised: what map_row uses."""
    raw_key = row[plan.key_pos]
    key = as_text(raw_key) if raw_key is not None else ""
    raw_email = row[plan.email_pos]
    email_text = as_text(raw_email).strip() if raw_email is not None else ""
    return key, email_text, email_text.lower()  # normalize_email of trimmed text


def peek_rows(plan: RowPlan, rows: Sequence[Sequence[Any]]) -> list[tuple[str, str, str]]:
    """key_and_email of every row; text keys and emails (the usual case) take a short cut."""
    kp, ep = plan.key_pos, plan.email_pos
    out: list[tuple[str, str, str]] = []
    append = out.append
    for row in rows:
        raw_key, raw_email = row[kp], row[ep]
        if type(raw_email) is str and type(raw_key) in (int, str):
            email_text = raw_email.strip()
            append((str(raw_key), email_text, email_text.lower()))
        else:
            append(key_and_email(plan, row))
    return out


def fingerprint_prefix(plan: RowPlan) -> str:
    """What every source fingerprint of a pass starts with: a hash of everything but the
    values that decides what map_row makes of a row (see `source_fingerprint`)."""
    seed = _hash_encode(
        [
            _MAPPING_VERSION,
            list(plan.columns),
            [plan.key_pos, plan.email_pos, plan.tags_pos],
            [list(f) for f in plan.fields],
            sorted(plan.limits.items()),
            sorted(plan.required),
            plan.list_id,
            plan.null_clears,
        ]
    )
    digest = hashlib.blake2b(seed.encode("utf-8", "surrogatepass"), digest_size=8)
    return digest.hexdigest() + ":"


def source_fingerprint(prefix: str, row: Sequence[Any]) -> str:
    """A row's fingerprint under a plan: the source's hash of its values (the row's last
    item) after the plan's prefix. Equal fingerprints mean map_row would give the same
    result, so an unchanged row need not be mapped at all."""
    return prefix + str(row[-1])


def map_row(
    plan: RowPlan, row: Sequence[Any], peek: tuple[str, str, str] | None = None
) -> MappedRow:
    """Map one source row; problems (invalid email, missing or too long values) are listed.
    `peek` is the row's `key_and_email` when the caller has it already (`peek_rows`)."""
    # Runs once per changed source row: kept to plain local operations.
    if peek is not None:
        key, email_text, norm = peek
    else:
        raw_key, raw_email = row[plan.key_pos], row[plan.email_pos]
        if type(raw_email) is str and type(raw_key) in (int, str):  # as peek_rows
            key, email_text = str(raw_key), raw_email.strip()
            norm = email_text.lower()
        else:
            key, email_text, norm = key_and_email(plan, row)
    problems: list[RowProblem] = []
    fields: dict[str, str] = {}
    clears = plan.null_clears
    if not norm:
        problems.append(
            RowProblem((plan.email_column,), "missing required field: email", "MISSING_REQUIRED")
        )
    elif not is_valid_normal_email(norm):
        problems.append(
            RowProblem(
                (plan.email_column,),
                f"invalid email: {_clip(email_text)!r}",
                "INVALID_EMAIL",
            )
        )
    else:
        fields["email"] = email_text
    for position, column, hub, limit in plan.checked:
        value = row[position]
        if value is None:
            if clears:  # no value in the source: none in the hub either
                fields[hub] = ""
            continue
        text = value if type(value) is str else as_text(value)
        if not text:
            if clears:
                fields[hub] = ""
            continue
        if len(text) > limit:
            problems.append(
                RowProblem(
                    (column,),
                    f"value too long for hub field {hub!r}: {len(text)} characters, "
                    f"at most {limit}",
                    "TOO_LONG",
                )
            )
            continue
        fields[hub] = text
    for _pos, column, hub in plan.fields if len(plan.required) > 1 else ():
        if hub in plan.required and not fields.get(hub) and not _has(problems, column):
            problems.append(
                RowProblem((column,), f"missing required field: {hub}", "MISSING_REQUIRED")
            )
    tags: tuple[str, ...] = ()
    if plan.tags_pos is not None and plan.tags_column is not None:
        tags = parse_tags(row[plan.tags_pos])
        if tags and max(map(len, tags)) > TAG_MAX:
            first = next(len(t) for t in tags if len(t) > TAG_MAX)
            problems.append(
                RowProblem(
                    (plan.tags_column,),
                    f"tag too long: {first} characters, at most {TAG_MAX}",
                    "TOO_LONG",
                )
            )
    return new_named_tuple(
        MappedRow, (key, norm, fields, tags, tuple(problems) if problems else ())
    )


def row_hash(row: MappedRow, list_id: str) -> str:
    """Hash of everything a write would send; equal hashes mean nothing to do."""
    blob = _hash_encode([list_id, sorted(row.fields.items()), list(row.tags)])
    return hashlib.blake2b(blob.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def row_hasher(plan: RowPlan) -> Callable[[MappedRow], str]:
    """`row_hash` for the rows `map_row` makes under `plan`: the same hashes, with the JSON
    text around the values written once per plan instead of encoded again for every row."""
    list_id = plan.list_id
    order = sorted({"email", *(hub for _, _, hub in plan.fields)})
    # '["<hub field>",' for each field the plan can fill, in the order row_hash sorts them
    opening = {hub: "[" + _quote(hub) + "," for hub in order}
    head = "[" + _quote(list_id) + ",["
    blake2b, quote = hashlib.blake2b, _quote

    def hasher(row: MappedRow) -> str:
        fields = row.fields
        try:
            if len(fields) == len(order):  # every field filled: most rows
                pairs = [opening[hub] + quote(fields[hub]) for hub in order]
            else:
                pairs = [opening[hub] + quote(fields[hub]) for hub in order if hub in fields]
            tags = ",".join(map(quote, row.tags))
        except (TypeError, KeyError):  # a value that is not str, or a field not in the plan
            return row_hash(row, list_id)
        if len(pairs) != len(fields):  # fields the plan does not fill, beside some it does
            return row_hash(row, list_id)
        body = "],".join(pairs) + "]" if pairs else ""
        text = head + body + "],[" + tags + "]]"
        return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()

    return hasher


def payload_size(row: MappedRow) -> int:
    """A cheap upper-bound estimate of the row's size in a JSON request body."""
    n = 64
    # len(text) is its UTF-8 length when it is ASCII (isascii is a flag check): no encode.
    for k, v in row.fields.items():
        n += len(k) + 6 + (len(v) if v.isascii() else len(v.encode("utf-8", "surrogatepass"))) * 2
    for t in row.tags:
        n += (len(t) if t.isascii() else len(t.encode("utf-8", "surrogatepass"))) * 2 + 4
    return n


def _has(problems: Sequence[RowProblem], column: str) -> bool:
    return any(column in p.columns for p in problems)


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "…"
