"""The simulator's bulk import: ``POST /import/bulk_import`` and ``GET /import/info``.

Imports are validated up front, held to AC's per-minute limits, then processed after the
sandbox's import latency (`importer.queue_import`).
"""

from __future__ import annotations

import math
import time
from typing import Any

from aiohttp import web

from syncd.sandbox.activecampaign.http import RATE_LIMITED_BODY, body_of, sandbox_of
from syncd.sandbox.activecampaign.importer import queue_import, validate_import

BULK_MAX_BYTES = 400_000  # documented maximum payload of one bulk_import request
IMPORT_LIMITS_KEY = web.AppKey("import_limits", bool)
# https://developers.activecampaign.com/reference/bulk-import-contacts: bulk_import requests
# with several contacts are limited to 100 a minute, those with a single contact to 20.
IMPORT_RATE = {True: 100, False: 20}  # per minute, by "more than one contact"
IMPORT_WINDOW = 60.0


async def bulk_import(request: web.Request) -> web.Response:
    """POST /import/bulk_import: validate all rows up front, then queue."""
    sb = sandbox_of(request)
    if (request.content_length or 0) > BULK_MAX_BYTES:
        return web.json_response(
            {
                "success": 0,
                "message": "Payload too large",
                "failureReasons": [
                    {"index": None, "reasons": [f"payload exceeds {BULK_MAX_BYTES} bytes"]}
                ],
            },
            status=400,
        )
    body = await body_of(request)
    contacts: Any = body.get("contacts")
    reasons = validate_import(contacts)
    if reasons:
        return web.json_response(
            {
                "success": 0,
                "message": "Contact import failed validation",
                "failureReasons": reasons,
            },
            status=400,
        )
    limited = _import_rate_limited(request, len(contacts) > 1)
    if limited is not None:
        return limited
    job = queue_import(sb, list(contacts))
    return web.json_response({"success": 1, "queued_contacts": job.queued, "batchId": job.batch_id})


async def import_info(request: web.Request) -> web.Response:
    """GET /import/info?batchId=: status (false, waiting, claimed, active, completed, failed,
    interrupted), the ids of the contacts it created and the emails it rejected
    (https://developers.activecampaign.com/reference/bulk-import-status-info)."""
    sb = sandbox_of(request)
    batch_id = request.query.get("batchId", "")
    if not batch_id:
        return web.json_response(
            {"success": 0, "message": "'batchId' is a required field."}, status=400
        )
    job = sb.imports.get(batch_id)
    if job is None:
        return web.json_response({"message": "No Result found for batchId"}, status=404)
    done = job.done
    return web.json_response(
        {
            "status": job.status(sb.now()),
            "success": list(job.success) if done else [],
            "failure": list(job.failure) if done else [],
        }
    )


def _import_rate_limited(request: web.Request, several: bool) -> web.Response | None:
    """429 when bulk imports of this kind went over AC's per-minute limit."""
    if not request.app[IMPORT_LIMITS_KEY]:
        return None
    sb = sandbox_of(request)
    now = time.monotonic()
    times = sb.import_times if several else sb.single_import_times
    while times and now - times[0] >= IMPORT_WINDOW:
        times.pop(0)
    if len(times) >= IMPORT_RATE[several]:
        wait = IMPORT_WINDOW - (now - times[0])
        return web.json_response(
            RATE_LIMITED_BODY, status=429, headers={"Retry-After": str(max(1, math.ceil(wait)))}
        )
    times.append(now)
    return None
