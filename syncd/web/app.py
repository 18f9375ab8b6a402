"""The aiohttp application: middlewares (metrics, auth, errors) and route wiring."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import Counter, Histogram

from syncd import metrics
from syncd.logging import get_logger
from syncd.web import admin, health
from syncd.web.api import CONTROL_KEY, ApiError, ApiRegistry, Handler, check_bearer
from syncd.web.components import publish
from syncd.web.context import Control

log = get_logger("syncd.web")
RouteInstaller = Callable[[web.Application, ApiRegistry], None]


@web.middleware
async def frame(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What every request goes through, in one layer (each layer is a coroutine call on every
    webhook): it is timed and counted by route template and status code; an /api/ route needs
    the admin bearer token; bad input becomes a 4xx JSON message, and an unexpected failure is
    logged and answered 500."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        try:
            if request.path.startswith("/api/"):
                check_bearer(request, request.app[CONTROL_KEY])
            resp = await handler(request)
        except ApiError:
            raise
        except web.HTTPException as exc:
            mapped = _as_api_error(exc)
            if mapped is exc:
                raise
            raise mapped from None
        except Exception:
            log.exception("http_handler_failed", path=request.path, method=request.method)
            raise ApiError(500, "internal error; see the daemon log") from None
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        counter, timer = _route_metrics(route, status)
        counter.inc()
        timer.observe(time.perf_counter() - started)


def _as_api_error(exc: web.HTTPException) -> web.HTTPException:
    """aiohttp's own 4xx (404, 405, 413 …) as a JSON message; anything else is `exc` itself."""
    if exc.status < 400 or exc.content_type == "application/json":
        return exc
    message = exc.reason
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        message = "request body too large"
    keep = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return ApiError(exc.status, message, headers=keep or None)


@functools.cache
def _route_metrics(route: str, status: int) -> tuple[Counter, Histogram]:
    # Looking children up by label costs more than the rest of a webhook's bookkeeping;
    # routes and status codes are a small fixed set, so each pair is resolved once.
    return metrics.HTTP_REQUESTS.labels(route, str(status)), metrics.HTTP_DURATION.labels(route)


def create_app(control: Control, installers: Iterable[RouteInstaller] = ()) -> web.Application:
    """Build the app; `installers` add the routes of later parts (webhooks, engine, overview)."""
    app = web.Application(
        middlewares=[frame],
        client_max_size=control.settings.daemon.max_body_bytes,
    )
    app[CONTROL_KEY] = control
    publish(app, control.started_components)
    api = ApiRegistry()
    health.install(app)
    admin.register(api)
    for install in installers:
        install(app, api)
    api.install(app)
    doc = api.openapi()

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(doc, dumps=lambda o: json.dumps(o, indent=1))

    app.router.add_get("/api/v1/openapi.json", openapi)
    return app
