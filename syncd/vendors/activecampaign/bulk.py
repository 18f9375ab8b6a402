"""Large contact upserts through ActiveCampaign's bulk import.

Above `bulk_threshold` valid rows an upsert is sent as ``bulk_import`` chunks instead of
one call per contact: AC queues them and is polled for the outcome. Every row still gets
its own WriteResult, in input order.

Call cost: ceil(n/250) ``bulk_import`` calls; then, per import, about one ``import/info``
read (one poller for all imports, see imports.py), one ``GET /contacts?ids[]=`` per 100
contacts it created (AC lists their ids in no order, so their emails are read to pair them
with rows), and for rows that updated a contact whose id the caller did not give (AC does
not list updated contacts) one read per 100 of the contacts changed since the import was
sent, and one ``GET /contacts?email=`` for any still unknown. No reads with
``confirm_imports=False``. A caller that needs no ids (``need_ids=False``: a dbsync that
neither deletes nor sends the last broadcast needs only which rows were created) is spared
every read when an import created all of its accepted rows or none of them, and the reads
of updated contacts always: at AC's 5 requests a second those reads, not the 100 imports a
minute, bound a first dbsync run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
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
from syncd.vendors.activecampaign.imports import (
    ImportOutcome,
    contact_id_of,
    contact_ids_by_email,
    ids_of_updated,
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
    """One contact of a bulk import: its input position, email, bulk_import entry (the
    JSON text of the object, ASCII only, so its length is its size in bytes) and the
    contact id the caller gave, if any."""

    pos: int
    email: str
    entry: str
    id: str | None


async def import_contacts(
    api: AcApi, items: Sequence[WriteItem], *, need_ids: bool = True
) -> list[WriteResult] | None:
    """Upsert contacts through bulk import; None when too few rows are valid for an import
    (the caller then writes them one by one)."""
    results: list[WriteResult | None] = [None] * len(items)
    bulk = await _prepare_bulk(api, items, results)
    if len(bulk) <= api.bulk_threshold:
        return None
    await _bulk(api, bulk, results, need_ids)
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
        entry = "{" + ",".join(parts) + "}"
        rows.append(new_named_tuple(_BulkRow, (i, email, entry, item.id)))
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
        # AC's 100 imports a minute count from each import's arrival (a 429 past them).
        slot = api.bulk_limiter.held() if api.bulk_limiter is not None else nullcontext()
        try:
            async with slot:
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


async def _bulk(
    api: AcApi, rows: list[_BulkRow], results: list[WriteResult | None], need_ids: bool
) -> None:
    """Submit every chunk first, then wait for them together, so AC works on them all."""
    batches: list[tuple[str, list[_BulkRow]]] = []
    sent = datetime.now(UTC)
    for chunk in _chunks(rows):
        batch_id = await _submit(api, chunk, results)
        if batch_id is not None:
            batches.append((batch_id, chunk))
    if not api.confirm_imports:
        for _, chunk in batches:
            for r in chunk:
                results[r.pos] = WriteResult(ok=True)
        return
    outcomes = await asyncio.gather(*(api.imports.wait(b) for b, _ in batches))
    for (batch_id, chunk), outcome in zip(batches, outcomes, strict=True):
        await _settle(api, batch_id, chunk, outcome, results, sent, need_ids)


async def _settle(
    api: AcApi,
    batch_id: str,
    chunk: list[_BulkRow],
    outcome: ImportOutcome,
    results: list[WriteResult | None],
    sent: datetime,
    need_ids: bool,
) -> None:
    """Each row's result from how its import ended, paired by email, never by position."""
    if outcome.status != "completed":
        if outcome.status is None:
            code = "IMPORT_TIMEOUT"
            why = f"did not end in {api.import_timeout:g}s"
        else:
            code = f"IMPORT_{outcome.status.upper()}"
            why = f"ended '{outcome.status}' (ActiveCampaign does not retry it)"
        err = failed(
            ErrorCategory.TRANSIENT,
            code,
            f"ActiveCampaign bulk import {batch_id} {why}; the contact was not confirmed"
            " written and is sent again next time",
        )
        for r in chunk:
            results[r.pos] = err
        return
    created = await _created(api, chunk, outcome, need_ids)
    # Updated rows whose id the caller did not give: AC does not list them; read together
    # (only for a caller that needs the ids).
    updated: dict[str, str] = {}
    if need_ids:
        unknown = [
            r.email.lower()
            for r in chunk
            if r.id is None
            and r.email.lower() not in created
            and r.email.lower() not in outcome.rejected
        ]
        if unknown:
            updated = await ids_of_updated(api.call, unknown, sent)
    for r in chunk:
        email = r.email.lower()
        if email in outcome.rejected:
            results[r.pos] = failed(
                ErrorCategory.REJECTED,
                "IMPORT_FAILED",
                f"ActiveCampaign's bulk import did not accept {r.email}",
            )
            continue
        if email in created:
            cid = created[email]
            results[r.pos] = new_named_tuple(WriteResult, (True, cid, True, None, None, None))
            continue
        # Updated, not created: AC does not list it; the id is the caller's or is looked up.
        rid = r.id or updated.get(email)
        if rid is None and need_ids:
            rid = await contact_id_of(api.call, email)
        results[r.pos] = new_named_tuple(WriteResult, (True, rid, False, None, None, None))


async def _created(
    api: AcApi, chunk: list[_BulkRow], outcome: ImportOutcome, need_ids: bool
) -> dict[str, str | None]:
    """Lower-cased email -> contact id (None: not read) of the rows the import created.

    AC lists the ids of the contacts an import created, in no order and without emails, so
    pairing them with rows costs a read per 100. Without `need_ids` that read is needed only
    when the import created some accepted rows and updated others: a count of created ids
    equal to the accepted rows' (or zero) already says what each row became.
    """
    if not need_ids:
        accepted = [r.email.lower() for r in chunk if r.email.lower() not in outcome.rejected]
        if not outcome.created_ids:
            return {}
        if len(outcome.created_ids) == len(accepted):
            return dict.fromkeys(accepted)
    return dict(await contact_ids_by_email(api.call, outcome.created_ids))


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
