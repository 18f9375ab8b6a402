"""Webhook intake: ActiveCampaign (form-encoded, token in the URL) and HubSpot (signed JSON).

Only the HTTP side lives here (who may post, how big, in what encoding); what a body means
is the vendor's business (``syncd.vendors.*.webhook``). A 2xx is answered only after the
change is committed to the store; a store failure or a daemon shutting down answers 503 so
the sender retries; malformed input answers 400.
"""

from __future__ import annotations

import hmac
import json
import time

from aiohttp import hdrs, web

from syncd.errors import StoreError
from syncd.jsontext import parse_json
from syncd.logging import get_logger
from syncd.model import Change
from syncd.sync.component import SyncEngine
from syncd.vendors.activecampaign.webhook import parse_activecampaign, parse_form
from syncd.vendors.hubspot.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    check_headers_v3,
    finish_v3,
    signer_v3,
)
from syncd.vendors.hubspot.webhook import parse_hubspot
from syncd.web.api import CONTROL_KEY, ApiError, ApiRegistry
from syncd.web.bodies import check_declared_length, read_body
from syncd.web.components import accepting_engine

log = get_logger("syncd.web")
_FORM_TYPE = "application/x-www-form-urlencoded"
_ACCEPTED_ONE = json.dumps({"accepted": 1}).encode()  # the answer to nearly every webhook


def _engine(request: web.Request) -> SyncEngine:
    return accepting_engine(request.app)


class RefusalLog:
    """Logs webhooks refused for a store failure: the first at once, then at most one line
    per `every` seconds saying how many were refused since (a full disk refuses thousands)."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._last = -float("inf")
        self._since = 0

    def refused(self, path: str, error: str) -> None:
        """Count one refusal; log when the last line is `every` seconds old."""
        self._since += 1
        now = time.monotonic()
        if now - self._last < self.every:
            return
        log.warning("webhook_refused", path=path, error=error, refused=self._since)
        self._last, self._since = now, 0


REFUSALS = web.AppKey("webhook_refusals", RefusalLog)


async def _submit(request: web.Request, engine: SyncEngine, changes: list[Change]) -> web.Response:
    try:
        await engine.intake.submit(changes)
    except StoreError as exc:
        # The route, not the path: ActiveCampaign's path holds the webhook token.
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "webhook"
        request.app[REFUSALS].refused(route, str(exc))
        raise ApiError(503, "could not store the change; retry later") from None
    if len(changes) == 1:
        return web.Response(body=_ACCEPTED_ONE, content_type="application/json")
    return web.json_response({"accepted": len(changes)})


async def activecampaign(request: web.Request) -> web.Response:
    """POST /webhooks/activecampaign/{token}."""
    control = request.app[CONTROL_KEY]
    hub = control.settings.hub
    expected = hub.webhook_token if hub is not None and hub.kind == "activecampaign" else None
    given = request.match_info["token"].encode("utf-8", "surrogateescape")
    if expected is None or not hmac.compare_digest(given, expected.get_secret_value().encode()):
        raise ApiError(404, "not found")
    engine = _engine(request)
    # Checked before reading: a multipart or oddly-charset body must not reach a parser
    # that fails with something other than ValueError (a 500). The header as senders write
    # it needs no parsing (no parameters, so no charset).
    if request.headers.get(hdrs.CONTENT_TYPE) != _FORM_TYPE:
        if request.content_type != _FORM_TYPE:
            raise ApiError(400, f"body must be form-encoded ({_FORM_TYPE})")
        if (request.charset or "utf-8").lower() not in ("utf-8", "utf8", "us-ascii"):
            raise ApiError(400, "body must be UTF-8 form-encoded data")
    raw = await read_body(request)
    change = _activecampaign_change(raw)
    raw.clear()  # a refused body is freed now, not when the collector comes by
    if isinstance(change, str):
        raise ApiError(400, change)
    return await _submit(request, engine, [change])


def _activecampaign_change(raw: bytearray) -> Change | str:
    """The change a body reports, or why it is refused (returned: no traceback keeps it)."""
    try:
        # Strict UTF-8, escapes included: a wrongly encoded name is refused, not mangled.
        form = parse_form(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "body must be UTF-8 form-encoded data"
    try:
        return parse_activecampaign(form)
    except ValueError as exc:
        return str(exc)


async def hubspot(request: web.Request) -> web.Response:
    """POST /webhooks/hubspot (v3 signature, at most 5 minutes old).

    Everything the headers can tell (signature and timestamp there, well-formed, fresh;
    declared length) is checked before a byte of the body is read; the body then goes
    through the signature as it arrives and is freed at once when it does not match.
    """
    control = request.app[CONTROL_KEY]
    hub = control.settings.hub
    if hub is None or hub.kind != "hubspot" or hub.webhook_secret is None:
        raise ApiError(404, "not found")
    signature = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    pre = check_headers_v3(signature, timestamp)
    if not pre.ok or signature is None or timestamp is None:
        raise ApiError(401, f"rejected: {pre.reason}")
    check_declared_length(request)
    # HubSpot signs the URL it called; behind a proxy that is daemon.public_url + the path.
    public = control.settings.daemon.public_url
    uri = public.rstrip("/") + request.path_qs if public else str(request.url)
    mac = signer_v3(hub.webhook_secret.get_secret_value(), request.method, uri)
    raw = await read_body(request, feed=mac.update)
    check = finish_v3(mac, signature, timestamp)
    if not check.ok:
        raw.clear()
        raise ApiError(401, f"rejected: {check.reason}")
    engine = _engine(request)
    changes = _hubspot_changes(raw)
    raw.clear()
    if isinstance(changes, str):
        raise ApiError(400, changes)
    return await _submit(request, engine, changes)


def _hubspot_changes(raw: bytearray) -> list[Change] | str:
    """The changes a signed body reports, or why it is refused (returned, not raised)."""
    body, problem = parse_json(raw)
    if problem is not None:
        return problem
    try:
        return parse_hubspot(body)
    except ValueError as exc:
        return str(exc)


def install(app: web.Application, api: ApiRegistry) -> None:
    """Add the webhook routes."""
    app[REFUSALS] = RefusalLog()
    app.router.add_post("/webhooks/activecampaign/{token}", activecampaign)
    app.router.add_post("/webhooks/hubspot", hubspot)
