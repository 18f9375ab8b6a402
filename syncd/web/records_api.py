"""Admin API of sync health and records: per-object health, links, streamed export, restore.

The health report itself is ``sync_health.py``; the overview page shows it too.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from syncd.errors import ConfigError, IntegrationError
from syncd.logging import get_logger
from syncd.model import ObjectType
from syncd.store.protocols import StateStore
from syncd.store.types import LinkFilter, RecordLink
from syncd.sync.restore import RestoreRequest, count_restorable, restore_links
from syncd.web.api import CONTROL_KEY, ERROR_SCHEMA, ApiError, ApiRegistry, read_json
from syncd.web.components import ENGINE_KEY
from syncd.web.overview_model import (
    LINK_COLUMNS,
    LINK_PARAMS,
    LINK_SCHEMA,
    MAX_ID,
    MAX_LIMIT,
    link_filter,
    link_row,
    page_args,
    parse_time,
)
from syncd.web.queue_api import store_guard
from syncd.web.sync_health import COUNT, HEALTH_SCHEMA, health

EXPORT_PAGE = 1000
log = get_logger("syncd.overview")
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
