"""Large contact upserts through ActiveCampaign's bulk import.

Above `bulk_threshold` valid rows an upsert is sent as ``bulk_import`` chunks instead of
one call per contact: AC queues them and is polled for the outcome. Every row still gets
its own WriteResult, in input order.

Call cost: ceil(n/250) ``bulk_import`` calls plus at least one ``import/info`` read per
chunk, and a read of the highest contact id at most every few seconds
(``ContactWatermark``); no reads with ``confirm_imports=False``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from syncd.model import ErrorCategory, WriteItem, WriteResult, new_named_tuple
from syncd.vendors.activecampaign.answers import (
    EMAIL_RE,
    Rejected,
    failed,
    failure_indices,
    record_error,
)
from syncd.vendors.activecampaign.write import (
    STANDARD,
    AcApi,
    as_list,
    field_keys,
    field_kind,
    filled,
    invalid_email,
    unknown_field,
)

BULK_MAX = 250
# AC refuses bulk_import bodies over 400,000 bytes; stay clear of it.
BULK_MAX_BYTES = 380_000
_EMAIL_KEY = '"email":'
# Bulk entries are written as text: a JSON string literal, non-ASCII escaped (as json.dumps).
_quote: Callable[[str], str] = encode_basestring_ascii


class _BulkRow(NamedTuple):
    """One contact of a bulk import: its input position, email and bulk_import entry (the
    JSON text of the object, ASCII only, so its length is its size in bytes)."""

    pos: int
    email: str
    entry: str


async def import_contacts(api: AcApi, items: Sequence[WriteItem]) -> list[WriteResult] | None:
    """Upsert contacts through bulk import; None when too few rows are valid for an import
    (the caller then writes them one by one)."""
    results: list[WriteResult | None] = [None] * len(items)
    bulk = await _prepare_bulk(api, items, results)
    if len(bulk) <= api.bulk_threshold:
        return None
    await _bulk(api, bulk, results)
    return filled(results)


async def _prepare_bulk(
    api: AcApi, items: Sequence[WriteItem], results: list[WriteResult | None]
) -> list[_BulkRow]:
    """Each valid item as the JSON text of its bulk_import entry, written in one pass over
    its fields (the rules of write.py's _prepare); invalid items get their result here.

    The text is written directly rather than built as a dict and encoded: for a million
    rows the dicts and the encoder's walk over them were the largest cost of a write call.
    """
    # Per call, not per item: how each field key is written, and the list subscriptions.
    kinds = {key: await _bulk_kind(api, key) for key in field_keys(items)}
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
                problem = unknown_field(key)
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
            problem = invalid_email(email)
        if problem is not None:
            results[i] = problem
            continue
        if custom:
            parts.append('"fields":[' + ",".join(custom) + "]")
        tags = fields.get("tags")
        if tags:
            if isinstance(tags, str):
                tags = as_list(tags)
            try:  # a sequence of str (the engine's rows) is quoted as it is
                quoted = ",".join(map(_quote, tags))
            except TypeError:
                quoted = ",".join(map(_quote, as_list(tags)))
            parts.append('"tags":[' + quoted + "]")
        lists = fields.get("lists")
        if lists:
            which = lists if isinstance(lists, str) else tuple(lists)
            sub = subscriptions.get(which)
            if sub is None:
                ids = ",".join(f'{{"listid":{int(lid)}}}' for lid in as_list(lists))
                sub = subscriptions[which] = f'"subscribe":[{ids}]'
            parts.append(sub)
        rows.append(new_named_tuple(_BulkRow, (i, email, "{" + ",".join(parts) + "}")))
    return rows


async def _bulk_kind(api: AcApi, key: str) -> str | None:
    """field_kind in bulk_import's terms: the text an entry's value follows, '"name":' for
    an attribute or '{"id":N,"value":' for a custom field; "" when AC has no such field,
    None for the keys handled apart."""
    kind = await field_kind(api, key)
    if kind is None:
        return None
    is_std, name = kind
    if not name:
        return ""
    return _quote(STANDARD[name]) + ":" if is_std else f'{{"id":{int(name)},"value":'


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
