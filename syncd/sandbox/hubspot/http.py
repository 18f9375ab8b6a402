"""Bodies and small helpers the HubSpot simulator's handlers share.

Error bodies follow HubSpot's shape ``{status, message, correlationId, category, …}``; the
401 and 429 bodies are the vendor's own (see /work/shared/API-FACTS.md).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from syncd.sandbox.common import SANDBOX_KEY
from syncd.sandbox.hubspot.state import PLURAL, HubSpotSandbox, PropertyInvalid

INVALID_AUTH_MESSAGE = "Authentication credentials not found."
TEN_SECONDLY_MESSAGE = "You have reached your ten_secondly_rolling limit."
SECONDLY_MESSAGE = "You have reached your secondly limit."
DAILY_MESSAGE = "You have reached your daily limit."
BATCH_LIMIT = 100
SEARCH_LIMIT = 200
SEARCH_MAX_RESULTS = 10_000
LIST_LIMIT = 100


class ApiError(Exception):
    """Raised by handlers; the middleware answers it with HubSpot's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        category: str,
        *,
        context: dict[str, Any] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.context = context
        self.errors = errors


def sandbox_of(request: web.Request) -> HubSpotSandbox:
    """The simulator behind an app."""
    sb = request.app[SANDBOX_KEY]
    assert isinstance(sb, HubSpotSandbox)
    return sb


def error_body(
    sb: HubSpotSandbox,
    message: str,
    category: str,
    *,
    context: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """HubSpot's standard error body."""
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": sb.correlation_id(),
        "category": category,
    }
    if context:
        body["context"] = context
    if errors:
        body["errors"] = errors
    return body


def invalid_auth_body(sb: HubSpotSandbox) -> dict[str, Any]:
    """The 401 for a missing or unknown token; like every HubSpot error, with a correlationId."""
    return error_body(sb, INVALID_AUTH_MESSAGE, "INVALID_AUTHENTICATION")


def expired_auth_body(sb: HubSpotSandbox) -> dict[str, Any]:
    """The 401 for an expired OAuth access token."""
    return error_body(
        sb,
        "The OAuth token used to make this call expired 5 minute(s) ago.",
        "EXPIRED_AUTHENTICATION",
    )


def rate_limit_body(sb: HubSpotSandbox, policy: str) -> dict[str, Any]:
    """The 429 body for one of HubSpot's policies (TEN_SECONDLY_ROLLING, SECONDLY, DAILY)."""
    message = {
        "TEN_SECONDLY_ROLLING": TEN_SECONDLY_MESSAGE,
        "SECONDLY": SECONDLY_MESSAGE,
        "DAILY": DAILY_MESSAGE,
    }[policy]
    return {
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": sb.correlation_id(),
        "policyName": policy,
        "requestId": sb.correlation_id().replace("-", ""),
    }


def validation_message(exc: PropertyInvalid) -> str:
    """HubSpot's message for invalid property values (the problems as embedded JSON)."""
    return "Property values were not valid: " + json.dumps(exc.problems, separators=(",", ":"))


def object_type(request: web.Request) -> str:
    """The {object} path part as a plural type name; 400 for an unknown type."""
    raw = request.match_info["object"].lower()
    obj = raw if raw in ("contacts", "companies", "deals") else PLURAL.get(raw)
    if obj is None:
        raise ApiError(400, f"Unable to infer object type from: {raw}", "VALIDATION_ERROR")
    return obj


async def json_body(request: web.Request) -> Any:
    """The decoded JSON body; 400 when it is not JSON."""
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "Invalid input JSON on line 1", "VALIDATION_ERROR") from None


def properties_param(request: web.Request) -> list[str] | None:
    """``?properties=a,b&properties=c`` as a list, or None for the defaults."""
    values = request.query.getall("properties", [])
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names or None


def not_found(sb: HubSpotSandbox, rid: str) -> ApiError:
    """HubSpot's 404 for a record id it does not know."""
    return ApiError(
        404,
        "Object not found.  objectId are usually numeric.",
        "OBJECT_NOT_FOUND",
        context={"id": [rid]},
    )
