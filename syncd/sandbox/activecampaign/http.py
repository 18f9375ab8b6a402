"""Small helpers the ActiveCampaign simulator's handlers share: bodies, params, paging."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from syncd.sandbox.activecampaign.state import (
    FORBIDDEN_BODY,
    RATE_LIMITED_BODY,
    UNAVAILABLE_BODY,
    ActiveCampaignSandbox,
)
from syncd.sandbox.common import SANDBOX_KEY

__all__ = ["FORBIDDEN_BODY", "RATE_LIMITED_BODY", "UNAVAILABLE_BODY"]

DUPLICATE_EMAIL_BODY = {
    "errors": [
        {
            "title": "Email address already exists in the system",
            "code": "duplicate",
            "source": {"pointer": "/data/attributes/email"},
        }
    ]
}
INVALID_EMAIL_BODY = {
    "errors": [
        {
            "title": "Contact Email Address is not valid.",
            "detail": "",
            "code": "email_invalid",
            "error": "must_be_valid_email_address",
            "source": {"pointer": "/data/attributes/email"},
        }
    ]
}
MAX_LIMIT = 100
DEFAULT_LIMIT = 20


class BadRequest(Exception):
    """Raised by helpers; turned into a 400 by the middleware."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def sandbox_of(request: web.Request) -> ActiveCampaignSandbox:
    """The simulator behind an app."""
    sb = request.app[SANDBOX_KEY]
    assert isinstance(sb, ActiveCampaignSandbox)
    return sb


async def body_of(request: web.Request, key: str | None = None) -> dict[str, Any]:
    """The JSON body (or its `key` object); 400 when it is not what AC expects."""
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("Invalid JSON in request body") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    if key is None:
        return data
    inner = data.get(key)
    if not isinstance(inner, dict):
        raise BadRequest(f"Missing '{key}' object in request body")
    return inner


def path_id(request: web.Request) -> int:
    """The numeric {id} of the path (404 when it is not a number)."""
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise web.HTTPNotFound(
            text=json.dumps({"message": f"No Result found for id {raw}"}),
            content_type="application/json",
        )
    return int(raw)


def not_found(kind: str, rid: int | str) -> web.Response:
    """AC's 404 body."""
    return web.json_response({"message": f"No Result found for {kind} with id {rid}"}, status=404)


def errors_422(title: str, code: str, pointer: str) -> web.Response:
    """A JSON:API style 422."""
    return web.json_response(
        {"errors": [{"title": title, "detail": "", "code": code, "source": {"pointer": pointer}}]},
        status=422,
    )


def paging(request: web.Request) -> tuple[int, int]:
    """limit (default 20, silently capped at 100) and offset."""
    q = request.query
    try:
        limit = int(q.get("limit", DEFAULT_LIMIT))
        offset = int(q.get("offset", 0))
    except ValueError:
        raise BadRequest("limit and offset must be integers") from None
    return max(1, min(limit, MAX_LIMIT)), max(0, offset)


def int_param(request: web.Request, name: str) -> int | None:
    """An optional integer query parameter."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def meta(total: int) -> dict[str, Any]:
    """AC's meta block: total is a string."""
    return {"total": str(total)}
