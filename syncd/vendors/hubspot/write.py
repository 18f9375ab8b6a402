"""HubSpot batch writes: 100 inputs a call, one WriteResult per item in input order.

Call costs: one ``batch/upsert|create|update`` per 100 items. Companies (and any object
matched on a non-unique property) first cost one search per 100 match values per match
property (domain, then name) to find existing records. A call HubSpot refuses as a whole
(400/409, e.g. "Contact already exists" on create) is retried one item per call, so every
item still gets its own result. Each input carries ``objectWriteTraceId`` = its position,
which HubSpot echoes on results and errors; results are matched on it, not on order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from syncd.jsontext import compact_encoder
from syncd.model import ErrorCategory, ObjectType, WriteItem, WriteOp, WriteResult
from syncd.vendors.hubspot.answers import (
    BATCH,
    OBJECTS,
    OPTOUT,
    READ_ONLY,
    Rejected,
    chunks,
    error_result,
    normalize_domain,
    prop_value,
)
from syncd.vendors.hubspot.recent import RecentWrites

Entry = tuple[int, dict[str, Any]]
_BODY_JSON = compact_encoder(default=None)
TAGS_FIELD = "tags"


class BatchHost(Protocol):
    """What the write path needs from the connector."""

    tag_property: str

    async def post_json(self, path: str, body: Any, *, endpoint: str) -> tuple[int, Any]:
        """POST through the shared client (body: a JSON value, or its encoded bytes); (status,
        decoded body). Raises Rejected on 4xx."""

    async def ensure_tag_options(self, tags: Sequence[str]) -> None:
        """Make sure the tag property offers these values."""

    def check_write_quota(self) -> None:
        """Raise QuotaExhausted when the daily reserve is reached."""

    async def lookup_ids(self, hs_obj: str, prop: str, values: Sequence[str]) -> dict[str, str]:
        """Existing record ids by lower-cased property value."""

    @property
    def recent(self) -> RecentWrites:
        """The records this connector wrote lately, by match value."""

    async def confirm_ids(self, hs_obj: str, prop: str, ids: Mapping[str, str]) -> dict[str, str]:
        """Those of `ids` (match value -> id) that still exist with that value (a read by id)."""


def _fail(code: str, message: str, cat: ErrorCategory = ErrorCategory.VALIDATION) -> WriteResult:
    return WriteResult(ok=False, error_category=cat, error_code=code, error_message=message)


def properties_of(
    host: BatchHost, hs_obj: str, fields: Mapping[str, Any]
) -> tuple[dict[str, str], list[str]]:
    """HubSpot properties for an item's fields, and the sync tags it adds."""
    props: dict[str, str] = {}
    tags: list[str] = []
    for name, value in fields.items():
        if name == TAGS_FIELD and hs_obj == "contacts":
            tags = [
                str(t)
                for t in (value if isinstance(value, list | tuple | set | frozenset) else [value])
                if t
            ]
            continue
        if name == OPTOUT:
            # Opting a contact out is fine; clearing an opt-out is never ours to do.
            if prop_value(value).lower() == "true":
                props[name] = "true"
            continue
        if name in READ_ONLY or name in ("id", "hs_object_id"):
            continue
        props[name] = prop_value(value)
    if tags:
        # A leading ';' appends to a multi-checkbox property instead of replacing its values.
        props[host.tag_property] = ";" + ";".join(dict.fromkeys(tags))
    return props, tags


async def write_records(
    host: BatchHost,
    obj: ObjectType,
    op: WriteOp,
    items: Sequence[WriteItem],
    match_field: str | None,
) -> list[WriteResult]:
    """Write items in batches of 100; results in input order."""
    hs_obj = OBJECTS[obj]
    results: dict[int, WriteResult] = {}
    prepared: list[dict[str, str]] = []
    all_tags: list[str] = []
    for item in items:
        props, tags = properties_of(host, hs_obj, item.fields)
        prepared.append(props)
        all_tags.extend(tags)
    if all_tags:
        await host.ensure_tag_options(list(dict.fromkeys(all_tags)))
    upserts: list[Entry] = []
    creates: list[Entry] = []
    updates: list[Entry] = []
    email_key = hs_obj == "contacts" and match_field in (None, "email")
    pending_match: list[int] = []
    for i, (item, props) in enumerate(zip(items, prepared, strict=True)):
        email = props.get("email", "").strip()
        if op is WriteOp.CREATE:
            creates.append((i, {"properties": props}))
        elif op is WriteOp.UPDATE or item.id:
            if item.id:
                updates.append((i, {"id": str(item.id), "properties": props}))
            elif email_key and email:
                updates.append((i, {"id": email, "idProperty": "email", "properties": props}))
            else:
                results[i] = _fail("MISSING_ID", "an update needs the record's HubSpot id")
        elif email_key:
            if email:
                upserts.append((i, {"id": email, "idProperty": "email", "properties": props}))
            else:
                results[i] = _fail("MISSING_EMAIL", "a contact needs an email to be matched")
        else:
            pending_match.append(i)
    if pending_match:
        matched = await _match(host, hs_obj, match_field, [prepared[i] for i in pending_match])
        for i, rid in zip(pending_match, matched, strict=True):
            if rid:
                updates.append((i, {"id": rid, "properties": prepared[i]}))
            else:
                creates.append((i, {"properties": prepared[i]}))
    for kind, entries in (("upsert", upserts), ("update", updates), ("create", creates)):
        for chunk in chunks(entries, BATCH):
            results.update(await _send(host, hs_obj, kind, list(chunk)))
    for prop in _match_order(hs_obj, match_field):
        # Search finds these writes only later: the next batch matches them from here.
        host.recent.remember(
            hs_obj,
            prop,
            (
                (_match_key(prop, prepared[i][prop]), str(res.id))
                for i, res in results.items()
                if res.ok and res.id and prepared[i].get(prop)
            ),
        )
    return [
        results.get(i)
        or _fail("NO_RESULT", "HubSpot returned no result for this record", ErrorCategory.REJECTED)
        for i in range(len(items))
    ]


async def _match(
    host: BatchHost, hs_obj: str, match_field: str | None, props: list[dict[str, str]]
) -> list[str | None]:
    """Existing ids for records matched on `match_field`, or domain then name for companies:
    by search, and for the values search does not find (yet), the records written lately."""
    found: list[str | None] = [None] * len(props)
    for prop in _match_order(hs_obj, match_field):
        todo = [i for i, p in enumerate(props) if found[i] is None and p.get(prop)]
        if not todo:
            continue
        keys = {i: _match_key(prop, props[i][prop]) for i in todo}
        ids = await host.lookup_ids(hs_obj, prop, sorted(set(keys.values())))
        missing = sorted({k for k in keys.values() if k not in ids})
        recent = host.recent.ids(hs_obj, prop, missing)
        if recent:
            ids.update(await host.confirm_ids(hs_obj, prop, recent))
        for i in todo:
            found[i] = ids.get(keys[i])
    return found


def _match_order(hs_obj: str, match_field: str | None) -> list[str]:
    if match_field:
        return [match_field]
    return ["domain", "name"] if hs_obj == "companies" else []


def _match_key(prop: str, value: str) -> str:
    return normalize_domain(value) if prop == "domain" else value.strip().lower()


async def _send(
    host: BatchHost, hs_obj: str, kind: str, entries: list[Entry]
) -> dict[int, WriteResult]:
    host.check_write_quota()
    inputs = [dict(inp, objectWriteTraceId=str(i)) for i, inp in entries]
    try:
        status, body = await host.post_json(
            f"/crm/v3/objects/{hs_obj}/batch/{kind}",
            # Encoded here, compact and in one pass (plain data: no circular check).
            _BODY_JSON({"inputs": inputs}).encode(),
            endpoint=f"{hs_obj}.batch.{kind}",
        )
    except Rejected as exc:
        if len(entries) == 1:
            return {entries[0][0]: exc.result()}
        # The whole call was refused for one bad input; one call per input finds which.
        out: dict[int, WriteResult] = {}
        for entry in entries:
            out.update(await _send(host, hs_obj, kind, [entry]))
        return out
    return map_batch(kind, entries, status, body if isinstance(body, dict) else {})


def map_batch(
    kind: str, entries: list[Entry], status: int, body: Mapping[str, Any]
) -> dict[int, WriteResult]:
    """Map a 200/201/207 batch response to WriteResults by input position."""
    positions = {str(i) for i, _ in entries}
    by_key = {_input_key(kind, inp): i for i, inp in entries}
    out: dict[int, WriteResult] = {}
    unmatched: list[dict[str, Any]] = []
    for row in body.get("results") or []:
        trace = str(row.get("objectWriteTraceId", ""))
        idx = int(trace) if trace in positions else by_key.get(_result_key(kind, row, entries))
        if idx is None:
            unmatched.append(row)
            continue
        created = bool(row.get("new")) if kind == "upsert" else kind == "create"
        out[idx] = WriteResult(ok=True, id=str(row["id"]), created=created)
    for err in body.get("errors") or []:
        ctx = err.get("context") or {}
        traces = [str(t) for t in ctx.get("objectWriteTraceId") or []]
        hits = [int(t) for t in traces if t in positions]
        if not hits:
            keys = [str(k).lower() for k in (ctx.get("ids") or ctx.get("id") or [])]
            hits = [by_key[k] for k in keys if k in by_key]
        for idx in hits:
            out[idx] = error_result(err)
    if unmatched and status in (200, 201):  # 201: batch/create
        # No trace ids and no keys: HubSpot answered in input order for a clean batch.
        missing = [i for i, _ in entries if i not in out]
        for idx, row in zip(missing, unmatched, strict=False):
            created = bool(row.get("new")) if kind == "upsert" else kind == "create"
            out[idx] = WriteResult(ok=True, id=str(row["id"]), created=created)
    return out


def _input_key(kind: str, inp: Mapping[str, Any]) -> str:
    if kind == "create":
        return str((inp.get("properties") or {}).get("email", "")).strip().lower() or f"#{id(inp)}"
    return str(inp.get("id", "")).strip().lower()


def _result_key(kind: str, row: Mapping[str, Any], entries: list[Entry]) -> str:
    props = row.get("properties") or {}
    if kind == "update":
        if any(inp.get("idProperty") == "email" for _, inp in entries):
            return str(props.get("email") or "").lower()
        return str(row.get("id", ""))
    return str(props.get("email") or "").strip().lower()
