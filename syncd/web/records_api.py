"""Admin API of sync health and records: per-object health, links, streamed export, restore."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from syncd.errors import ConfigError, IntegrationError
from syncd.logging import get_logger
from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType, RunKind
from syncd.store.protocols import StateStore
from syncd.store.types import EntryGroup, LinkFilter, RecordLink
from syncd.sync.component import SyncEngine
from syncd.sync.gate import shared_pause
from syncd.sync.restore import RestoreRequest, count_restorable, restore_links
from syncd.web.api import CONTROL_KEY, ERROR_SCHEMA, ApiError, ApiRegistry, read_json
from syncd.web.components import ENGINE_KEY
from syncd.web.hints import category_hint, exclusion_group
from syncd.web.overview_model import (
    INTEGRATION_ERRORS_SCHEMA,
    LINK_COLUMNS,
    LINK_PARAMS,
    LINK_SCHEMA,
    MAX_ID,
    MAX_LIMIT,
    integration_errors,
    iso,
    link_filter,
    link_row,
    page_args,
    parse_time,
)
from syncd.web.queue_api import store_guard

EXPORT_PAGE = 1000
log = get_logger("syncd.overview")
COUNT = {"type": "integer"}
OBJECT_HEALTH: dict[str, Any] = {
    "type": "object",
    "required": ["synced", "processed", "pending", "processing", "failing", "excluded"],
    "properties": {
        "synced": COUNT,
        "processed": COUNT,
        "pending": COUNT,
        "processing": COUNT,
        "failing": {
            "type": "object",
            "description": "records with failed entries (`total`, `count`); `entries`: the "
            "queue entries, several per record when it failed more than once",
            "properties": {
                "total": COUNT,
                "entries": COUNT,
                "by_category": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "category": {"type": "string"},
                            "count": COUNT,
                            "entries": COUNT,
                            "hint": {"type": "string"},
                        },
                    },
                },
            },
        },
        "excluded": {
            "type": "object",
            "description": "records with excluded entries; `entries`, `entries_by_group`: "
            "the queue entries",
            "properties": {
                "total": COUNT,
                "entries": COUNT,
                "by_group": {"type": "object", "additionalProperties": COUNT},
                "by_reason": {"type": "object", "additionalProperties": COUNT},
                "entries_by_group": {"type": "object", "additionalProperties": COUNT},
            },
        },
    },
}
CONNECTOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["side", "name", "calls_since_start"],
    "properties": {
        "side": {"type": "string"},
        "name": {"type": "string"},
        "quota_used": {"type": "integer", "nullable": True},
        "quota_limit": {"type": "integer", "nullable": True},
        "quota_percent": {"type": "number", "nullable": True},
        "calls_since_start": {"type": "number"},
    },
}
RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "kind", "status", "started_at"],
    "properties": {
        "id": COUNT,
        "kind": {"type": "string"},
        "name": {"type": "string", "nullable": True},
        "trigger": {"type": "string"},
        "status": {"type": "string"},
        "started_at": {"type": "string", "format": "date-time", "nullable": True},
        "finished_at": {"type": "string", "format": "date-time", "nullable": True},
        "counts": {"type": "object", "additionalProperties": COUNT},
        "error": {"type": "string", "nullable": True},
    },
}
DIRECTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "per direction: paused by an operator (shared by every instance)",
    "additionalProperties": {
        "type": "object",
        "required": ["paused"],
        "properties": {"paused": {"type": "boolean"}},
    },
}
HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["objects", "directions", "connectors", "integration_errors", "latest_runs"],
    "properties": {
        "directions": DIRECTIONS_SCHEMA,
        "objects": {"type": "object", "additionalProperties": OBJECT_HEALTH},
        "connectors": {"type": "array", "items": CONNECTOR_SCHEMA},
        "integration_errors": INTEGRATION_ERRORS_SCHEMA,
        "latest_runs": {"type": "array", "items": RUN_SCHEMA},
    },
}
RECORDS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["records", "next_cursor"],
    "properties": {
        "records": {"type": "array", "items": LINK_SCHEMA},
        "next_cursor": {"type": "integer", "nullable": True},
    },
}
RESTORE_BODY: dict[str, Any] = {
    "type": "object",
    "description": "optional: restore only these record (link) ids",
    "properties": {
        "ids": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            "maxItems": 10000,
        },
    },
}
RESTORE_PARAMS: tuple[dict[str, Any], ...] = (
    {
        "name": "object",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "enum": [o.value for o in ObjectType]},
    },
    {
        "name": "to",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "enum": ["hub", "crm"]},
        "description": "the side the records were deleted on, where they are re-created",
    },
    {"name": "dry_run", "in": "query", "required": False, "schema": {"type": "boolean"}},
    *(p for p in LINK_PARAMS if p["name"] in ("q", "synced_after", "synced_before")),
)
RESTORE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["dry_run", "matching"],
    "properties": {
        "dry_run": {"type": "boolean"},
        "matching": COUNT,
        "restored": COUNT,
        "failed": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"id": COUNT, "error": {"type": "string"}},
            },
        },
    },
}


def _add(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


async def health(request: web.Request) -> dict[str, Any]:
    """Per-object counts, connector quota use and integration errors.

    Synced, failing and excluded count records (a record that failed three times is one
    failing record); the queue entries behind failing and excluded are given as `entries`.
    """
    control = request.app[CONTROL_KEY]
    store = control.store
    objects: dict[str, dict[str, Any]] = {
        o.value: {
            "synced": 0,
            "processed": 0,
            "pending": 0,
            "processing": 0,
            "failing": {"total": 0, "entries": 0, "by_category": []},
            "excluded": {
                "total": 0,
                "entries": 0,
                "by_group": {},
                "by_reason": {},
                "entries_by_group": {},
            },
        }
        for o in ObjectType
    }
    for (obj, status), n in (await store.link_counts()).items():
        if status != "deleted":
            objects[obj.value]["synced"] += n
    failing: dict[tuple[str, str], dict[str, int]] = {}  # (object, category) -> counts

    def category(g: EntryGroup) -> dict[str, int]:
        cat = g.category.value if g.category else "rejected"
        return failing.setdefault((g.object.value, cat), {"count": 0, "entries": 0})

    for g in await store.entry_breakdown():
        o = objects[g.object.value]
        if g.status is EntryStatus.ERROR:
            o["failing"]["entries"] += g.count
            category(g)["entries"] += g.count
        elif g.status is EntryStatus.EXCLUDED:
            o["excluded"]["entries"] += g.count
            _add(o["excluded"]["entries_by_group"], exclusion_group(g.reason), g.count)
        else:
            o[g.status.value] += g.count
    records = await store.record_breakdown()
    for (obj, status), n in records.totals.items():
        objects[obj.value]["failing" if status is EntryStatus.ERROR else "excluded"]["total"] = n
    for g in records.groups:
        if g.status is EntryStatus.ERROR:
            category(g)["count"] += g.count
        else:
            # A record excluded for two reasons of one group counts in both (rare).
            ex = objects[g.object.value]["excluded"]
            _add(ex["by_group"], exclusion_group(g.reason), g.count)
            _add(ex["by_reason"], g.reason or "unknown", g.count)
    for (obj_name, cat), counts in sorted(failing.items()):
        objects[obj_name]["failing"]["by_category"].append(
            {
                "category": cat,
                "count": counts["count"],
                "entries": counts["entries"],
                "hint": category_hint(ErrorCategory(cat)),
            }
        )
    return {
        "objects": objects,
        "directions": {d.value: {"paused": await shared_pause(store, d)} for d in Direction},
        "connectors": connector_usage(request.app.get(ENGINE_KEY)),
        "integration_errors": await integration_errors(request.app),
        "latest_runs": await latest_runs(store),
    }


async def latest_runs(store: StateStore) -> list[dict[str, Any]]:
    """The newest flush, the newest pull per object and the newest run per dbsync."""
    seen: set[tuple[str, str | None]] = set()
    out: list[dict[str, Any]] = []
    for kind, depth in ((RunKind.FLUSH, 1), (RunKind.PULL, 40), (RunKind.DBSYNC, 40)):
        for run in await store.list_runs(kind=kind, limit=depth):
            key = (run.kind.value, run.name)
            if key in seen:
                continue
            seen.add(key)
            out.append(
                {
                    "id": run.id,
                    "kind": run.kind.value,
                    "name": run.name,
                    "trigger": run.trigger.value,
                    "status": run.status,
                    "started_at": iso(run.started_at),
                    "finished_at": iso(run.finished_at),
                    "counts": dict(run.counts),
                    "error": run.error,
                }
            )
    return out


def connector_usage(engine: SyncEngine | None) -> list[dict[str, Any]]:
    """Vendor-reported quota (Salesforce: rolling 24 h) and our own call count per connector."""
    from syncd import metrics

    if engine is None:
        return []
    calls: dict[str, float] = {}
    for family in metrics.API_REQUESTS.collect():
        for s in family.samples:
            if s.name.endswith("_total"):
                name = s.labels.get("connector", "")
                calls[name] = calls.get(name, 0.0) + s.value
    out = []
    for side, conn in (("crm", engine.crm), ("hub", engine.hub)):
        q = conn.quota()
        out.append(
            {
                "side": side,
                "name": conn.name,
                "quota_used": q.used if q else None,
                "quota_limit": q.limit if q else None,
                "quota_percent": round(100.0 * q.used / q.limit, 1) if q and q.limit else None,
                "calls_since_start": calls.get(conn.name, 0.0),
            }
        )
    return out


async def iter_links(
    store: StateStore, filt: LinkFilter, page: int = EXPORT_PAGE
) -> AsyncIterator[list[RecordLink]]:
    """Every link matching `filt`, one page at a time (constant memory)."""
    after: int | None = None
    while True:
        rows = await store.list_links(filt, after_id=after, limit=page)
        if not rows:
            return
        yield rows
        after = rows[-1].id
        if len(rows) < page:
            return


def _cell(value: object) -> object:
    # Spreadsheets run cells that start like a formula; names and emails come from outside.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _csv_lines(links: list[RecordLink], header: bool) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    if header:
        w.writerow(LINK_COLUMNS)
    for link in links:
        row = link_row(link)
        row["sync_tags"] = ";".join(row["sync_tags"])
        w.writerow([_cell(row[c]) for c in LINK_COLUMNS])
    return buf.getvalue().encode()


async def stream_export(request: web.Request, fmt: str) -> web.StreamResponse:
    """Stream every matching link as CSV or a JSON array, page by page."""
    filt = link_filter(request.query)
    store = request.app[CONTROL_KEY].store
    await store.ping()  # fail with 503 before the 200 header is sent
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/json",
            "Content-Disposition": f'attachment; filename="syncd-records.{fmt}"',
        }
    )
    await resp.prepare(request)
    first = True
    if fmt == "json":
        await resp.write(b"[")
    async for links in iter_links(store, filt):
        if fmt == "csv":
            await resp.write(_csv_lines(links, header=first))
        else:
            parts = [json.dumps(link_row(link)) for link in links]
            await resp.write((b"\n" if first else b",\n") + ",\n".join(parts).encode())
        first = False
    if fmt == "csv" and first:
        await resp.write(_csv_lines([], header=True))
    if fmt == "json":
        await resp.write(b"\n]" if not first else b"]")
    await resp.write_eof()
    return resp


def register(api: ApiRegistry) -> None:
    """Add health, records, export and restore routes."""

    @api.route(
        "GET",
        "/api/v1/health",
        summary="Sync health per object, API calls per connector, integration errors",
        responses={200: HEALTH_SCHEMA, 503: ERROR_SCHEMA},
    )
    @store_guard
    async def get_health(request: web.Request) -> web.Response:
        return web.json_response(await health(request))

    @api.route(
        "GET",
        "/api/v1/records",
        summary="Linked records (hub id, CRM id, email, tags, status, last sync), in id order",
        responses={200: RECORDS_SCHEMA, 400: ERROR_SCHEMA, 503: ERROR_SCHEMA},
        params=(
            *LINK_PARAMS,
            {
                "name": "after",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            },
        ),
    )
    @store_guard
    async def records(request: web.Request) -> web.Response:
        filt = link_filter(request.query)
        after, limit = page_args(request.query, cursor="after")
        rows = await request.app[CONTROL_KEY].store.list_links(filt, after_id=after, limit=limit)
        return web.json_response(
            {
                "records": [link_row(r) for r in rows],
                "next_cursor": rows[-1].id if len(rows) == limit else None,
            }
        )

    @api.route(
        "GET",
        "/api/v1/records/export.csv",
        summary="Export the filtered records as CSV (streamed)",
        responses={200: {"type": "string"}, 400: ERROR_SCHEMA, 503: ERROR_SCHEMA},
        params=LINK_PARAMS,
        content_types={200: "text/csv"},
    )
    @store_guard
    async def export_csv(request: web.Request) -> web.StreamResponse:
        return await stream_export(request, "csv")

    @api.route(
        "GET",
        "/api/v1/records/export.json",
        summary="Export the filtered records as a JSON array (streamed)",
        responses={200: {"type": "array", "items": LINK_SCHEMA}, 400: ERROR_SCHEMA},
        params=LINK_PARAMS,
    )
    @store_guard
    async def export_json(request: web.Request) -> web.StreamResponse:
        return await stream_export(request, "json")

    @api.route(
        "POST",
        "/api/v1/records/restore",
        summary="Re-create records deleted on one side since linking (dry_run: only count)",
        responses={200: RESTORE_SCHEMA, 400: ERROR_SCHEMA, 503: ERROR_SCHEMA},
        body=RESTORE_BODY,
        params=RESTORE_PARAMS,
    )
    @store_guard
    async def restore(request: web.Request) -> web.Response:
        req = parse_restore(request.query, await read_json(request))
        control = request.app[CONTROL_KEY]
        if req.dry_run:
            matching = await count_restorable(control.store, req)
            return web.json_response({"dry_run": True, "matching": matching})
        engine = request.app.get(ENGINE_KEY)
        if engine is None:
            raise ApiError(503, "sync engine not configured: restoring needs both connectors")
        try:
            outcome = await restore_links(engine, control.settings, control.store, req)
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None
        except IntegrationError as exc:
            raise ApiError(503, f"restore stopped: {exc}") from None
        log.info(
            "records_restored",
            object=req.object.value,
            side=req.to,
            matching=outcome.matching,
            restored=outcome.restored,
            failed=len(outcome.failed),
        )
        return web.json_response(
            {
                "dry_run": False,
                "matching": outcome.matching,
                "restored": outcome.restored,
                "failed": [{"id": i, "error": e} for i, e in outcome.failed],
            }
        )


def parse_restore(query: Mapping[str, str], body: Mapping[str, Any]) -> RestoreRequest:
    """Which records from the query (object, to, filters, dry_run) and body (ids)."""
    try:
        obj = ObjectType(query.get("object", ""))
    except ValueError:
        allowed = ", ".join(o.value for o in ObjectType)
        raise ApiError(400, f"object: required, one of {allowed}") from None
    to = query.get("to")
    if to not in ("hub", "crm"):
        raise ApiError(400, "to: required, hub or crm (the side the records were deleted on)")
    ids = body.get("ids", [])
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID for i in ids
    ):
        raise ApiError(400, "ids: must be a list of record ids")
    if len(ids) > 10_000:
        raise ApiError(400, "ids: at most 10000 per request")
    dry = query.get("dry_run", "false").lower()
    if dry not in ("true", "false", "1", "0"):
        raise ApiError(400, "dry_run: must be true or false")
    return RestoreRequest(
        obj,
        to,
        frozenset(ids),
        query.get("q") or None,
        synced_after=parse_time("synced_after", query.get("synced_after")),
        synced_before=parse_time("synced_before", query.get("synced_before")),
        dry_run=dry in ("true", "1"),
    )
