"""Webhook intake: ActiveCampaign (form-encoded, token in the URL) and HubSpot (signed JSON).

Only the HTTP side lives here (who may post, how big, in what encoding); what a body means
is the vendor's business (``syncd.vendors.*.webhook``). A 2xx is answered only after the
change is committed to the store; a store failure or a daemon shutting down answers 503 so
the sender retries; malformed input answers 400.
"""

from __future__ import annotations

import hmac
import json

from aiohttp import hdrs, web

from syncd.errors import StoreError
from syncd.model import Change
from syncd.sync.component import SyncEngine
from syncd.vendors.activecampaign.webhook import parse_activecampaign, parse_form
from syncd.vendors.hubspot.signature import check_signature_v3
from syncd.vendors.hubspot.webhook import parse_hubspot
from syncd.web.api import CONTROL_KEY, ApiError, ApiRegistry
from syncd.web.components import accepting_engine

_FORM_TYPE = "application/x-www-form-urlencoded"
_ACCEPTED_ONE = json.dumps({"accepted": 1}).encode()  # the answer to nearly every webhook


def _engine(request: web.Request) -> SyncEngine:
    return accepting_engine(request.app)


async def _submit(engine: SyncEngine, changes: list[Change]) -> web.Response:
    try:
        await engine.intake.submit(changes)
    except StoreError:
        raise ApiError(503, "could not store the change; retry later") from None
    if len(changes) == 1:
        return web.Response(body=_ACCEPTED_ONE, content_type="application/json")
    return web.json_response({"accepted": len(changes)})


async def activecampaign(request: web.Request) -> web.Response:
    """POST /webhooks/activecampaign/{token}."""
    control = request.app[CONTROL_KEY]
    hub = control.settings.hub
    expected = hub.webhook_token if hub is not None and hub.kind == "activecampaign" else None
    given = request.match_info["token"].encode()
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
    _check_length(request)
    raw = await request.read()
    try:
        # Strict UTF-8, escapes included: a wrongly encoded name is refused, not mangled.
        text = raw.decode("utf-8")
        form = parse_form(text)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "body must be UTF-8 form-encoded data") from None
    try:
        change = parse_activecampaign(form)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return await _submit(engine, [change])


def _check_length(request: web.Request) -> None:
    """413 at once for a declared length over the limit (don't wait for a body to come)."""
    limit = request.app[CONTROL_KEY].settings.daemon.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"body larger than {limit} bytes (daemon.max_body_bytes)")


async def hubspot(request: web.Request) -> web.Response:
    """POST /webhooks/hubspot (v3 signature, at most 5 minutes old)."""
    control = request.app[CONTROL_KEY]
    hub = control.settings.hub
    if hub is None or hub.kind != "hubspot" or hub.webhook_secret is None:
        raise ApiError(404, "not found")
    _check_length(request)
    raw = await request.read()
    # HubSpot signs the URL it called; behind a proxy that is daemon.public_url + the path.
    public = control.settings.daemon.public_url
    uri = public.rstrip("/") + request.path_qs if public else str(request.url)
    check = check_signature_v3(
        hub.webhook_secret.get_secret_value(),
        request.method,
        uri,
        raw,
        request.headers.get("X-HubSpot-Signature-v3"),
        request.headers.get("X-HubSpot-Request-Timestamp"),
    )
    if not check.ok:
        raise ApiError(401, f"rejected: {check.reason}")
    engine = _engine(request)
    try:
        changes = parse_hubspot(json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return await _submit(engine, changes)


def install(app: web.Application, api: ApiRegistry) -> None:
    """Add the webhook routes."""
    app.router.add_post("/webhooks/activecampaign/{token}", activecampaign)
    app.router.add_post("/webhooks/hubspot", hubspot)
