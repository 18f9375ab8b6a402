"""Admin API of the sync engine: flush, pulls, pause and resume."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from syncd.errors import IntegrationError, StoreError
from syncd.model import Direction, ObjectType
from syncd.sync.counts import RunCounts
from syncd.sync.pull_run import PullBusy, PullNotStarted
from syncd.web.api import ERROR_SCHEMA, ApiError, ApiRegistry
from syncd.web.components import engine_of

COUNTS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "integer"}}
ACCEPTED: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": ["requested", "started", "done", "failed"]},
        "counts": COUNTS,
        "error": {"type": "string"},
    },
}
GATE_CHANGED: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["paused", "resumed"]}},
}
WAIT_PARAM = {"name": "wait", "in": "query", "required": False, "schema": {"type": "boolean"}}


def _done(counts: RunCounts) -> dict[str, Any]:
    """A waited-for run's answer: done with its counts, or failed with why (the CLI exits
    1 on failed)."""
    if counts.error is not None:
        return {"status": "failed", "counts": counts.as_dict(), "error": counts.error}
    return {"status": "done", "counts": counts.as_dict()}


def _wait(request: web.Request) -> bool:
    raw = request.query.get("wait", "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, "wait: must be true or false")
    return raw in ("true", "1")


def register(api: ApiRegistry) -> None:
    """Add the engine's admin routes."""

    @api.route(
        "POST",
        "/api/v1/flush",
        summary="Flush the inbound buffer now",
        responses={200: ACCEPTED, 202: ACCEPTED, 400: ERROR_SCHEMA, 503: ERROR_SCHEMA},
        params=(WAIT_PARAM,),
    )
    async def flush(request: web.Request) -> web.Response:
        engine = engine_of(request.app)
        fut = engine.flusher.request()
        if not _wait(request):
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            return web.json_response({"status": "requested"}, status=202)
        try:
            counts = await fut
        except (StoreError, IntegrationError) as exc:
            raise ApiError(503, f"flush failed: {exc}") from None
        return web.json_response(_done(counts))

    @api.route(
        "POST",
        "/api/v1/pulls/{object}",
        enums={"object": tuple(o.value for o in ObjectType)},
        summary="Pull one object from the CRM now",
        responses={
            200: ACCEPTED,
            202: ACCEPTED,
            400: ERROR_SCHEMA,
            404: ERROR_SCHEMA,
            409: ERROR_SCHEMA,
            503: ERROR_SCHEMA,
        },
        params=(WAIT_PARAM,),
    )
    async def pull(request: web.Request) -> web.Response:
        engine = engine_of(request.app)
        try:
            obj = ObjectType(request.match_info["object"])
        except ValueError:
            raise ApiError(
                404, "no such object: use contact, lead, account or opportunity"
            ) from None
        if not engine.started:
            raise ApiError(503, "the sync engine is starting (store not open yet): retry")
        if not _wait(request):
            # Answered once the pull holds its lock: a pull running on another instance
            # is a 409 here too, not a "started" for a pull that never runs.
            try:
                await engine.pull_in_background(obj)
            except PullBusy as exc:
                raise ApiError(409, str(exc)) from None
            except (StoreError, PullNotStarted) as exc:
                raise ApiError(503, f"pull failed: {exc}") from None
            return web.json_response({"status": "started"}, status=202)
        try:
            counts = await engine.pull_now(obj)
        except PullBusy as exc:
            raise ApiError(409, str(exc)) from None
        except StoreError as exc:
            raise ApiError(503, f"pull failed: {exc}") from None
        return web.json_response(_done(counts))

    for action in ("pause", "resume"):

        async def handler(request: web.Request, _paused: bool = action == "pause") -> web.Response:
            engine = engine_of(request.app)
            try:
                direction = Direction(request.match_info["direction"])
            except ValueError:
                raise ApiError(404, "no such direction: use inbound or outbound") from None
            gate = engine.gates.get(direction)
            if gate is None:
                raise ApiError(404, "no such direction: use inbound or outbound")
            try:
                await gate.set_paused(_paused)
            except StoreError as exc:
                raise ApiError(503, f"could not record the change: {exc}") from None
            if not _paused:
                engine.flusher.notify_arrivals()
            return web.json_response({"status": "paused" if _paused else "resumed"})

        api.route(
            "POST",
            f"/api/v1/sync/{{direction}}/{action}",
            enums={"direction": (Direction.INBOUND.value, Direction.OUTBOUND.value)},
            summary=f"{action.capitalize()} one direction (changes keep queueing)",
            responses={200: GATE_CHANGED, 404: ERROR_SCHEMA, 503: ERROR_SCHEMA},
        )(handler)


def install(app: web.Application, api: ApiRegistry) -> None:
    """Route installer for the daemon's app."""
    register(api)
