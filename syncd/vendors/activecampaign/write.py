"""Writes to ActiveCampaign: contact/sync for small batches, bulk import for large ones,
accounts and deals one by one. Every function returns one WriteResult per input, in order.

Call cost: a contact batch of n ≤ threshold costs n calls (plus tag/list calls when items
carry ``tags``/``lists``); a larger upsert costs ceil(n/250) ``bulk_import`` calls plus at
least one ``import/info`` read per chunk, and a read of the highest contact id at most
every few seconds (``ContactWatermark``); no reads with ``confirm_imports=False``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple, Protocol

from syncd.model import ErrorCategory, WriteItem, WriteOp, WriteResult, new_named_tuple
from syncd.vendors.activecampaign.answers import (
    EMAIL_RE,
    Rejected,
    failed,
    failure_indices,
    record_error,
)
from syncd.vendors.http import HttpResponse, RateLimiter

BULK_MAX = 250
# AC refuses bulk_import bodies over 400,000 bytes; stay clear of it.
BULK_MAX_BYTES = 380_000
STANDARD = {"email": "email", "firstName": "first_name", "lastName": "last_name", "phone": "phone"}
ALIASES = {"first_name": "firstName", "last_name": "lastName"}
META_KEYS = {"tags", "lists", "id"}
_EMAIL_KEY = '"email":'
# Bulk entries are written as text: a JSON string literal, non-ASCII escaped (as json.dumps).
_quote: Callable[[str], str] = encode_basestring_ascii


class AcApi(Protocol):
    """What the writers need from the connector."""

    bulk_threshold: int
    import_poll_interval: float
    import_timeout: float
    confirm_imports: bool
    bulk_limiter: RateLimiter | None
    contact_mark: ContactWatermark

    async def call(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        json_body: Any = None,
        params: Any = None,
    ) -> Any:
        """One API call; returns the decoded body."""

    async def raw(
        self, method: str, path: str, *, endpoint: str, json_body: Any = None
    ) -> HttpResponse:
        """One API call; returns the whole response."""

    async def field_ids(self) -> dict[str, str]:
        """Custom field id by lower-cased title, perstag or id."""

    async def add_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        """Tag a contact."""

    async def subscribe(self, list_id: str, contact_ids: Sequence[str]) -> Any:
        """Subscribe contacts to a list."""


class ContactWatermark:
    """The highest contact id AC had before an import: the ids above it that the import
    reports are the contacts it created (AC's import results do not say).

    Read from AC at most every `ttl` seconds and otherwise raised by the ids this connector's
    own writes reported, so a run of imports costs one read, not one each. A contact that
    someone else creates inside that window and an import of ours then updates is counted as
    created; the data is right either way, as for one created while an import waits in AC's
    queue.
    """

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._value: int | None = None
        self._read_at = 0.0

    async def before_import(self, api: AcApi) -> int | None:
        """The watermark to judge an import about to be sent (None: unknown)."""
        now = time.monotonic()
        if self._value is None or now - self._read_at >= self.ttl:
            self._value = await _highest_contact_id(api)
            self._read_at = now
        return self._value

    def seen(self, ids: Iterable[str]) -> None:
        """Raise the watermark past contact ids our writes were answered with."""
        if self._value is not None:
            self._value = max(self._value, max((int(i) for i in ids if i.isdigit()), default=0))


@dataclass
class _Row:
    index: int
    email: str
    std: dict[str, str]
    custom: dict[str, str]  # field id -> value
    tags: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    id: str | None = None


class _BulkRow(NamedTuple):
    """One contact of a bulk import: its input position, email and bulk_import entry (the
    JSON text of the object, ASCII only, so its length is its size in bytes)."""

    pos: int
    email: str
    entry: str


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


async def _prepare(
    api: AcApi, items: Sequence[WriteItem], results: list[WriteResult | None], need_email: bool
) -> list[_Row]:
    # The same few field names repeat on every item: each is resolved once per call to
    # (standard attribute?, name or custom field id), None for tags/lists/id, or "" when AC
    # has no such field.
    kinds = {key: await _field_kind(api, key) for key in _keys(items)}
    rows: list[_Row] = []
    for i, item in enumerate(items):
        std: dict[str, str] = {}
        custom: dict[str, str] = {}
        problem: WriteResult | None = None
        for key, value in item.fields.items():
            kind = kinds[key]
            if kind is None:
                continue
            is_std, name = kind
            if not name:
                problem = _unknown_field(key)
                break
            if type(value) is not str:  # str() only when needed: this runs per value
                value = "" if value is None else str(value)
            if is_std:
                std[name] = value.strip()
            else:
                custom[name] = value
        email = std.get("email", "")
        if problem is None and (need_email or email) and not EMAIL_RE.match(email):
            problem = _invalid_email(email)
        if problem is not None:
            results[i] = problem
            continue
        rows.append(
            _Row(
                i,
                email,
                std,
                custom,
                _as_list(item.fields.get("tags")),
                _as_list(item.fields.get("lists")),
                item.id,
            )
        )
    return rows


def _keys(items: Sequence[WriteItem]) -> set[str]:
    """Every field key of a batch (a few names, repeated on every item)."""
    return set().union(*(item.fields for item in items))


async def _field_kind(api: AcApi, key: str) -> tuple[bool, str] | None:
    """How _prepare writes a field key: (True, standard name), (False, custom field id),
    (False, "") when AC has no such field, None for the keys it handles apart."""
    key = ALIASES.get(key, key)
    if key in META_KEYS:
        return None
    if key in STANDARD:
        return True, key
    fid = (await api.field_ids()).get(key.lower())
    return False, fid or ""


async def write_contacts(api: AcApi, op: WriteOp, items: Sequence[WriteItem]) -> list[WriteResult]:
    """Write contacts matched by email; large upserts go through bulk import."""
    results: list[WriteResult | None] = [None] * len(items)
    if op is WriteOp.UPSERT and len(items) > api.bulk_threshold:
        bulk = await _prepare_bulk(api, items, results)
        if len(bulk) > api.bulk_threshold:
            await _bulk(api, bulk, results)
            return _filled(results)
        results = [None] * len(items)  # too few valid rows for an import: one by one below
    by_id = op is WriteOp.UPDATE and all(i.id for i in items)
    rows = await _prepare(api, items, results, need_email=not by_id)
    for row in rows:
        results[row.index] = await _one(api, op, row)
    return _filled(results)


def _filled(results: list[WriteResult | None]) -> list[WriteResult]:
    return [r or failed(ErrorCategory.TRANSIENT, "NO_RESULT", "no result") for r in results]


async def _prepare_bulk(
    api: AcApi, items: Sequence[WriteItem], results: list[WriteResult | None]
) -> list[_BulkRow]:
    """Each valid item as the JSON text of its bulk_import entry, written in one pass over
    its fields (the rules of _prepare); invalid items get their result here.

    The text is written directly rather than built as a dict and encoded: for a million
    rows the dicts and the encoder's walk over them were the largest cost of a write call.
    """
    # Per call, not per item: how each field key is written, and the list subscriptions.
    kinds = {key: await _bulk_kind(api, key) for key in _keys(items)}
    subscriptions: dict[Any, str] = {}
    rows: list[_BulkRow] = []
    for i, item in enumerate(items):
        parts: list[str] = []
        custom: list[str] = []
        email = ""
        problem: WriteResult | None = None
        fields = item.fields
        for key, value in fields.items():
            kind = kinds[key]
            if kind is None:
                continue
            if kind == "":
                problem = _unknown_field(key)
                break
            if type(value) is not str:
                value = "" if value is None else str(value)
            if kind[0] == "{":  # a custom field: '{"id":N,"value":'
                custom.append(kind + _quote(value) + "}")
                continue
            value = value.strip()
            if kind == _EMAIL_KEY:
                email = value
            parts.append(kind + _quote(value))
        if problem is None and not EMAIL_RE.match(email):
            problem = _invalid_email(email)
        if problem is not None:
            results[i] = problem
            continue
        if custom:
            parts.append('"fields":[' + ",".join(custom) + "]")
        tags = fields.get("tags")
        if tags:
            if isinstance(tags, str):
                tags = _as_list(tags)
            try:  # a sequence of str (the engine's rows) is quoted as it is
                quoted = ",".join(map(_quote, tags))
            except TypeError:
                quoted = ",".join(map(_quote, _as_list(tags)))
            parts.append('"tags":[' + quoted + "]")
        lists = fields.get("lists")
        if lists:
            which = lists if isinstance(lists, str) else tuple(lists)
            sub = subscriptions.get(which)
            if sub is None:
                ids = ",".join(f'{{"listid":{int(lid)}}}' for lid in _as_list(lists))
                sub = subscriptions[which] = f'"subscribe":[{ids}]'
            parts.append(sub)
        rows.append(new_named_tuple(_BulkRow, (i, email, "{" + ",".join(parts) + "}")))
    return rows


async def _bulk_kind(api: AcApi, key: str) -> str | None:
    """_field_kind in bulk_import's terms: the text an entry's value follows, '"name":' for
    an attribute or '{"id":N,"value":' for a custom field; "" when AC has no such field,
    None for the keys handled apart."""
    kind = await _field_kind(api, key)
    if kind is None:
        return None
    is_std, name = kind
    if not name:
        return ""
    return _quote(STANDARD[name]) + ":" if is_std else f'{{"id":{int(name)},"value":'


def _unknown_field(key: str) -> WriteResult:
    return failed(
        ErrorCategory.MAPPING,
        "UNKNOWN_FIELD",
        f"activecampaign has no contact field named {ALIASES.get(key, key)!r}",
    )


def _invalid_email(email: str) -> WriteResult:
    return failed(ErrorCategory.VALIDATION, "INVALID_EMAIL", f"invalid email address: {email!r}")


async def _one(api: AcApi, op: WriteOp, row: _Row) -> WriteResult:
    contact: dict[str, Any] = dict(row.std)
    if row.custom:
        contact["fieldValues"] = [{"field": f, "value": v} for f, v in row.custom.items()]
    try:
        if op is WriteOp.CREATE:
            body = await api.call(
                "POST", "/contacts", endpoint="contacts.create", json_body={"contact": contact}
            )
            created = True
        elif op is WriteOp.UPDATE and row.id:
            body = await api.call(
                "PUT",
                f"/contacts/{row.id}",
                endpoint="contacts.update",
                json_body={"contact": contact},
            )
            created = False
        else:
            resp = await api.raw(
                "POST", "/contact/sync", endpoint="contact.sync", json_body={"contact": contact}
            )
            body = resp.json()
            # contact/sync answers 201 when it created the contact, 200 when it updated one.
            created = resp.status == 201
        cid = str(body["contact"]["id"])
        api.contact_mark.seen((cid,))
        if row.tags:
            await api.add_tags(cid, row.tags)
        for lid in row.lists:
            await api.subscribe(lid, [cid])
    except Rejected as exc:
        return record_error(exc.resp)
    return WriteResult(ok=True, id=cid, created=created)


async def _submit(
    api: AcApi, chunk: list[_BulkRow], results: list[WriteResult | None]
) -> str | None:
    """Queue one chunk; rows AC rejects up front are marked and the rest resubmitted once."""
    for attempt in range(2):
        if api.bulk_limiter is not None:
            await api.bulk_limiter.acquire()
        try:
            body = await api.call(
                "POST",
                "/import/bulk_import",
                endpoint="import.bulk",
                json_body=_body(chunk),
            )
            return str(body["batchId"])
        except Rejected as exc:
            try:
                bad = failure_indices(exc.resp.json())
            except ValueError:
                bad = {}
            if attempt == 1 or not bad:
                err = record_error(exc.resp)
                for r in chunk:
                    results[r.pos] = err
                return None
            keep = []
            for pos, r in enumerate(chunk):
                if pos in bad:
                    results[r.pos] = failed(ErrorCategory.VALIDATION, "IMPORT_INVALID", bad[pos])
                else:
                    keep.append(r)
            chunk[:] = keep
            if not chunk:
                return None
    return None


async def _bulk(api: AcApi, rows: list[_BulkRow], results: list[WriteResult | None]) -> None:
    """Submit every chunk first, then poll, so AC works on them while we send the next."""
    batches: list[tuple[str, list[_BulkRow]]] = []
    # Import results list ids but not whether each contact is new: ids above the highest
    # one before the import were created by it.
    high = await api.contact_mark.before_import(api) if api.confirm_imports else None
    for chunk in _chunks(rows):
        batch_id = await _submit(api, chunk, results)
        if batch_id is not None:
            batches.append((batch_id, chunk))
    for batch_id, chunk in batches:
        if not api.confirm_imports:
            for r in chunk:
                results[r.pos] = WriteResult(ok=True)
            continue
        info = await _wait_import(api, batch_id)
        if info is None:
            for r in chunk:
                results[r.pos] = failed(
                    ErrorCategory.TRANSIENT,
                    "IMPORT_TIMEOUT",
                    f"bulk import {batch_id} did not finish in {api.import_timeout:g}s",
                )
            continue
        failures = {str(e).strip().lower() for e in info.get("failure") or []}
        ok_rows = chunk
        if failures:
            ok_rows = []
            for r in chunk:
                if r.email.lower() in failures:
                    results[r.pos] = failed(
                        ErrorCategory.REJECTED,
                        "IMPORT_FAILED",
                        f"ActiveCampaign's bulk import did not accept {r.email}",
                    )
                else:
                    ok_rows.append(r)
        ids = [str(x) for x in info.get("success") or []]
        api.contact_mark.seen(ids)
        # AC lists the ids of the imported contacts; they line up with the accepted rows.
        if len(ids) != len(ok_rows):
            for r in ok_rows:
                results[r.pos] = WriteResult(True)
            continue
        for r, cid in zip(ok_rows, ids, strict=True):
            created = high is not None and cid.isdigit() and int(cid) > high
            results[r.pos] = new_named_tuple(WriteResult, (True, cid, created, None, None, None))


async def _highest_contact_id(api: AcApi) -> int | None:
    body = await api.call(
        "GET",
        "/contacts",
        endpoint="contacts.list",
        params={"orders[id]": "DESC", "limit": "1"},
    )
    rows = body.get("contacts") if isinstance(body, dict) else None
    if not rows:
        return 0
    raw = str(rows[0].get("id", ""))
    return int(raw) if raw.isdigit() else None


def _chunks(rows: list[_BulkRow]) -> list[list[_BulkRow]]:
    """Runs of at most 250 rows whose request body stays under the payload limit."""
    out: list[list[_BulkRow]] = []
    cur: list[_BulkRow] = []
    empty = len(_body([]))  # the body's own text around the entries
    size = empty
    for row in rows:
        n = len(row.entry) + 1  # its text and a comma
        if cur and (len(cur) >= BULK_MAX or size + n > BULK_MAX_BYTES):
            out.append(cur)
            cur, size = [], empty
        cur.append(row)
        size += n
    if cur:
        out.append(cur)
    return out


def _body(chunk: Sequence[_BulkRow]) -> bytes:
    """The bulk_import request body of a chunk, from its entries' text."""
    return ('{"contacts":[' + ",".join([r.entry for r in chunk]) + "]}").encode("ascii")


async def _wait_import(api: AcApi, batch_id: str) -> dict[str, Any] | None:
    deadline = time.monotonic() + api.import_timeout
    while True:
        info = await api.call(
            "GET", "/import/info", endpoint="import.info", params={"batchId": batch_id}
        )
        if isinstance(info, dict) and str(info.get("status", "")).lower() in (
            "completed",
            "complete",
            "done",
        ):
            return info
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(api.import_poll_interval)


async def write_plain(
    api: AcApi,
    kind: str,
    op: WriteOp,
    items: Sequence[WriteItem],
    match_field: str | None,
) -> list[WriteResult]:
    """Accounts (``kind="account"``) or deals (``kind="deal"``), one call (or two) per item."""
    out: list[WriteResult] = []
    plural = f"{kind}s"
    for item in items:
        payload = {k: v for k, v in item.fields.items() if k not in META_KEYS}
        try:
            target = item.id
            if target is None and op is WriteOp.UPSERT and kind == "account":
                key = "name" if match_field in (None, "email") else str(match_field)
                target = await _find_account(api, str(payload.get(key, "")))
            if target is None and op is WriteOp.UPDATE:
                out.append(failed(ErrorCategory.VALIDATION, "MISSING_ID", "update needs an id"))
                continue
            if target is None:
                body = await api.call(
                    "POST", f"/{plural}", endpoint=f"{plural}.create", json_body={kind: payload}
                )
                out.append(WriteResult(ok=True, id=str(body[kind]["id"]), created=True))
            else:
                body = await api.call(
                    "PUT",
                    f"/{plural}/{target}",
                    endpoint=f"{plural}.update",
                    json_body={kind: payload},
                )
                out.append(WriteResult(ok=True, id=str(body[kind]["id"])))
        except Rejected as exc:
            out.append(record_error(exc.resp))
    return out


async def _find_account(api: AcApi, name: str) -> str | None:
    if not name:
        return None
    body = await api.call(
        "GET", "/accounts", endpoint="accounts.search", params={"search": name, "limit": "100"}
    )
    for row in body.get("accounts") or []:
        if str(row.get("name", "")).strip().lower() == name.strip().lower():
            return str(row["id"])
    return None
