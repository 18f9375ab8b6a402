"""Sync health: per-object record and queue counts, operator pauses, connector API use,
integration errors and the latest runs; served by ``GET /api/v1/health`` and shown on the
overview page.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType, RunKind
from syncd.store.protocols import StateStore
from syncd.store.types import EntryGroup
from syncd.sync.component import SyncEngine
from syncd.sync.gate import shared_pause
from syncd.web.api import CONTROL_KEY
from syncd.web.components import ENGINE_KEY
from syncd.web.hints import category_hint, exclusion_group
from syncd.web.overview_model import INTEGRATION_ERRORS_SCHEMA, integration_errors, iso

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
