"""Admin API: daemon status."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from syncd import __version__
from syncd.errors import StoreError
from syncd.sync.cluster import alive
from syncd.web.api import CONTROL_KEY, ApiRegistry

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "uptime_seconds", "config_digest", "store", "jobs", "queue"],
    "properties": {
        "version": {"type": "string"},
        "uptime_seconds": {"type": "number"},
        "config_digest": {"type": "string"},
        "store": {"type": "string"},
        "jobs": {"type": "array", "items": {"type": "object"}},
        "queue": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
            },
        },
        "queue_error": {"type": "string"},
        "instance": {"type": "string"},
        "instances": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "started_at", "seen_at", "alive", "view"],
                "properties": {
                    "id": {"type": "string"},
                    "started_at": {"type": "string", "format": "date-time"},
                    "seen_at": {"type": "string", "format": "date-time"},
                    "alive": {"type": "boolean"},
                    "view": {"type": "object"},
                },
            },
        },
    },
}


def register(api: ApiRegistry) -> None:
    """Add the status route."""

    @api.route(
        "GET",
        "/api/v1/status",
        summary="Version, uptime, config digest, store, job schedule and queue counts",
        responses={200: STATUS_SCHEMA},
    )
    async def status(request: web.Request) -> web.Response:
        control = request.app[CONTROL_KEY]
        settings = control.settings
        queue: dict[str, dict[str, int]] = {}
        body: dict[str, Any] = {
            "version": __version__,
            "uptime_seconds": round(time.time() - control.started_at, 3),
            "config_digest": settings.digest(),
            "store": settings.daemon.store,
            "jobs": control.job_schedule(),
            "queue": queue,
        }
        try:
            for (direction, st), n in (await control.store.counts()).items():
                queue.setdefault(direction.value, {})[st.value] = n
            # Every instance on the store, with its view of the shared state (paused
            # directions, errors) as of its last heartbeat.
            now = datetime.now(UTC)
            body["instances"] = [
                {
                    "id": b.id,
                    "started_at": b.started_at.isoformat(),
                    "seen_at": b.seen_at.isoformat(),
                    "alive": alive(b, settings, now),
                    "view": dict(b.view),
                }
                for b in await control.store.instances()
            ]
        except StoreError as exc:
            body["queue_error"] = str(exc)
        body.update(control.status_extra())
        return web.json_response(body)
