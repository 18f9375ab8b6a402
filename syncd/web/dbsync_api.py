"""Admin API of dbsync: list, test, run, and run reports (JSON, or the failed rows as CSV)."""

from __future__ import annotations

import csv
import io
from typing import Any

from aiohttp import web

from syncd.dbsync.component import DbsyncComponent
from syncd.dbsync.types import DbsyncBusy
from syncd.errors import IntegrationError, StoreError
from syncd.model import RunKind
from syncd.store.types import Run, RunFailure
from syncd.web.api import CONTROL_KEY, ERROR_SCHEMA, ApiError, ApiRegistry
from syncd.web.components import DBSYNC_KEY, dbsync_of
from syncd.web.overview_model import parse_int

FAILURE_PAGE = 1000
COUNTS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "integer"}}
RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string"},
        "trigger": {"type": "string"},
        "name": {"type": "string", "nullable": True},
        "status": {"type": "string"},
        "started_at": {"type": "string"},
        "finished_at": {"type": "string", "nullable": True},
        "counts": COUNTS,
        "error": {"type": "string", "nullable": True},
        "progress": {"type": "object", "nullable": True},
        "failures": {"type": "array", "items": {"type": "object"}},
    },
}
BUSY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "run_id": {"type": "integer", "nullable": True}},
}
STARTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "run_id"],
    "properties": {
        "status": {"type": "string"},
        "run_id": {"type": "integer"},
        "mode": {"type": "string", "enum": ["test", "run"]},
    },
}
COST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rows": {"type": "integer"},
        "calls": {"type": "integer"},
        "minutes": {"type": "number"},
    },
}
EXACT_PARAM: dict[str, Any] = {
    "name": "exact",
    "in": "query",
    "schema": {"type": "string", "enum": ["true", "false"]},
}
CSV_COLUMNS = ("key", "columns", "reason", "category", "email")


def component_of(request: web.Request) -> DbsyncComponent:
    """The dbsync component, or 503 when it is not running."""
    return dbsync_of(request.app)


def _name(request: web.Request, comp: DbsyncComponent) -> str:
    name = request.match_info["name"]
    if comp.config(name) is None:
        raise ApiError(404, f"no dbsync named {name!r}")
    return name


def run_json(run: Run) -> dict[str, Any]:
    """A stored run as JSON."""
    return {
        "id": run.id,
        "kind": run.kind.value,
        "trigger": run.trigger.value,
        "name": run.name,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "counts": dict(run.counts),
        "error": run.error,
    }


def failure_json(f: RunFailure) -> dict[str, Any]:
    """A failed row as JSON."""
    return {
        "key": f.key,
        "columns": list(f.columns),
        "reason": f.reason,
        "category": f.category.value,
        "email": f.email,
    }


def install(app: web.Application, api: ApiRegistry) -> None:
    """Route installer for the daemon's app."""

    @api.route(
        "GET",
        "/api/v1/dbsyncs",
        summary="List the configured dbsyncs with their last run",
        responses={200: {"type": "object"}, 503: ERROR_SCHEMA},
    )
    async def list_dbsyncs(request: web.Request) -> web.Response:
        comp = component_of(request)
        store = request.app[CONTROL_KEY].store
        running = {p.name: rid for rid, p in comp.progress.items()}
        out = []
        for cfg in request.app[CONTROL_KEY].settings.dbsync:
            try:
                runs = await store.list_runs(kind=RunKind.DBSYNC, name=cfg.name, limit=1)
                tests = await store.list_runs(kind=RunKind.DBSYNC_TEST, name=cfg.name, limit=1)
            except StoreError as exc:
                raise ApiError(503, f"store unavailable: {exc}") from None
            out.append(
                {
                    "name": cfg.name,
                    "table": cfg.table,
                    "list": cfg.list,
                    "schedule": cfg.schedule,
                    "delete_missing": cfg.delete_missing,
                    "delete_missing_action": cfg.delete_missing_action,
                    "update_existing": cfg.update_existing,
                    "null_clears": cfg.null_clears,
                    "send_last_broadcast": cfg.send_last_broadcast,
                    "running_run_id": running.get(cfg.name),
                    "last_run": run_json(runs[0]) if runs else None,
                    "last_test": run_json(tests[0]) if tests else None,
                }
            )
        return web.json_response({"dbsyncs": out})

    @api.route(
        "GET",
        "/api/v1/dbsyncs/{name}/lookup-cost",
        summary="What a test with exact=true costs at most: hub lookups and minutes",
        responses={200: COST_SCHEMA, 404: ERROR_SCHEMA, 503: ERROR_SCHEMA},
    )
    async def lookup_cost(request: web.Request) -> web.Response:
        comp = component_of(request)
        name = _name(request, comp)
        try:
            cost = await comp.lookup_cost(name)
        except (IntegrationError, StoreError) as exc:
            raise ApiError(503, str(exc)) from None
        return web.json_response(cost.as_dict())

    @api.route(
        "POST",
        "/api/v1/dbsyncs/{name}/test",
        summary=(
            "Start a test: a run that writes nothing and, unless exact=true, asks the hub "
            "nothing per row; 409 while a run or test of it is going on"
        ),
        responses={202: STARTED_SCHEMA, 404: ERROR_SCHEMA, 409: BUSY_SCHEMA, 503: ERROR_SCHEMA},
        params=(EXACT_PARAM,),
    )
    async def test_dbsync(request: web.Request) -> web.Response:
        exact = request.query.get("exact", "false")
        if exact not in ("true", "false"):
            raise ApiError(400, "exact: must be true or false")
        return await _start(request, test=True, exact=exact == "true")

    @api.route(
        "POST",
        "/api/v1/dbsyncs/{name}/run",
        summary="Start a run now; 409 with the running run's id when one is going on",
        responses={202: STARTED_SCHEMA, 404: ERROR_SCHEMA, 409: BUSY_SCHEMA, 503: ERROR_SCHEMA},
    )
    async def run_dbsync(request: web.Request) -> web.Response:
        return await _start(request, test=False, exact=False)

    @api.route(
        "POST",
        "/api/v1/runs/{id}/cancel",
        summary="Cancel a dbsync run or test going on in this instance (recorded interrupted)",
        responses={202: STARTED_SCHEMA, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA},
    )
    async def cancel_run(request: web.Request) -> web.Response:
        run_id = _run_id(request)
        run = await request.app[CONTROL_KEY].store.get_run(run_id)
        if run is None:
            raise ApiError(404, f"no run {run_id}")
        if run.status != "running":
            raise ApiError(409, f"run {run_id} is not running (it is {run.status})")
        if not component_of(request).cancel(run_id):
            raise ApiError(
                409, f"run {run_id} is not running in this instance; cancel it where it runs"
            )
        return web.json_response({"status": "cancelling", "run_id": run_id}, status=202)

    @api.route(
        "GET",
        "/api/v1/runs/{id}",
        summary="One run with its failed rows (?format=csv exports the failed rows)",
        responses={200: RUN_SCHEMA, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA},
        params=(
            {
                "name": "format",
                "in": "query",
                "schema": {"type": "string", "enum": ["json", "csv"]},
            },
            {"name": "after", "in": "query", "schema": {"type": "integer"}},
            {"name": "limit", "in": "query", "schema": {"type": "integer"}},
        ),
        content_types={200: "application/json"},
    )
    async def get_run(request: web.Request) -> web.StreamResponse:
        run_id = _run_id(request)
        after = parse_int("after", request.query.get("after"), low=0) or 0
        limit = parse_int("limit", request.query.get("limit"), low=0)
        limit = min(max(limit if limit is not None else FAILURE_PAGE, 1), 10_000)
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv"):
            raise ApiError(400, "format: must be json or csv")
        store = request.app[CONTROL_KEY].store
        run = await store.get_run(run_id)
        if run is None:
            raise ApiError(404, f"no run {run_id}")
        if fmt == "csv":
            return await _csv(request, run_id)
        failures = await store.run_failures(run_id, after=after, limit=limit)
        body = run_json(run)
        comp = request.app.get(DBSYNC_KEY)
        prog = comp.progress.get(run_id) if comp is not None else None
        body["progress"] = prog.as_dict() if prog is not None else None
        body["failures"] = [failure_json(f) for f in failures]
        body["failures_next_after"] = after + len(failures) if len(failures) == limit else None
        return web.json_response(body)


async def _start(request: web.Request, *, test: bool, exact: bool) -> web.Response:
    comp = component_of(request)
    name = _name(request, comp)
    try:
        run_id = await comp.request_run(name, test=test, exact=exact)
    except DbsyncBusy as exc:
        raise ApiError(409, str(exc), run_id=exc.run_id) from None
    except (IntegrationError, StoreError) as exc:
        raise ApiError(503, str(exc)) from None
    mode = "test" if test else "run"
    return web.json_response({"status": "started", "run_id": run_id, "mode": mode}, status=202)


def _run_id(request: web.Request) -> int:
    # ASCII digits within the stores' BIGINT (a bigger one failed in the store, a 500).
    return parse_int("id", request.match_info["id"], low=0) or 0


async def _csv(request: web.Request, run_id: int) -> web.StreamResponse:
    """Stream every failed row of a run as CSV, page by page."""
    store = request.app[CONTROL_KEY].store
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="run-{run_id}-failures.csv"',
        }
    )
    await resp.prepare(request)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    after = 0
    while True:
        page = await store.run_failures(run_id, after=after, limit=FAILURE_PAGE)
        for f in page:
            writer.writerow(
                [
                    _cell(f.key),
                    ";".join(f.columns),
                    _cell(f.reason),
                    f.category.value,
                    _cell(f.email or ""),
                ]
            )
        await resp.write(buf.getvalue().encode("utf-8", "surrogatepass"))
        buf.seek(0)
        buf.truncate()
        if len(page) < FAILURE_PAGE:
            break
        after += len(page)
    await resp.write_eof()
    return resp


def _cell(text: str) -> str:
    # A cell starting with = + - @ is a formula to spreadsheet programs; quote it as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
