"""Probes and metrics: /healthz (alive), /readyz (can do its job), /metrics (Prometheus)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from syncd.lifecycle import Check
from syncd.web.api import CONTROL_KEY


def _body(checks: dict[str, Check]) -> dict[str, object]:
    ok = all(c.ok for c in checks.values())
    return {
        "status": "ok" if ok else "fail",
        "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()},
    }


async def healthz(request: web.Request) -> web.Response:
    """200 while the event loop and scheduler run."""
    checks = request.app[CONTROL_KEY].liveness()
    body = _body(checks)
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


async def readyz(request: web.Request) -> web.Response:
    """200 when the store, scheduler and connectors are usable; 503 naming what is not."""
    checks = request.app[CONTROL_KEY].readiness()
    body = _body(checks)
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


async def metrics_handler(_: web.Request) -> web.Response:
    """Prometheus text exposition of the process registry."""
    resp = web.Response(body=generate_latest(REGISTRY))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def install(app: web.Application) -> None:
    """Add the probe and metrics routes."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
