"""Admin API plumbing: a route registry that also produces the OpenAPI document, auth, errors."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from syncd import __version__
from syncd.jsontext import parse_json
from syncd.web.context import Control

CONTROL_KEY = web.AppKey("control", Control)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}


class ApiError(web.HTTPException):
    """An HTTP error answered as ``{"error": message}`` JSON."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        self.status_code = status
        super().__init__(
            headers=headers,
            text=json.dumps({"error": message, **extra}),
            content_type="application/json",
        )


@dataclass(frozen=True)
class ApiRoute:
    """One documented admin route."""

    method: str
    path: str
    handler: Handler
    summary: str
    responses: dict[int, dict[str, Any]]
    params: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None
    content_types: dict[int, str] = field(default_factory=dict)
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)


class ApiRegistry:
    """Collects admin routes; installs them behind bearer auth and documents them."""

    def __init__(self) -> None:
        self.routes: list[ApiRoute] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        responses: dict[int, dict[str, Any]],
        params: tuple[dict[str, Any], ...] = (),
        body: dict[str, Any] | None = None,
        content_types: dict[int, str] | None = None,
        enums: dict[str, tuple[str, ...]] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register a handler for `method path` with its documented responses.

        `enums` lists the values a path parameter may take (others answer 404).
        """

        def deco(fn: Handler) -> Handler:
            self.routes.append(
                ApiRoute(
                    method,
                    path,
                    fn,
                    summary,
                    responses,
                    params,
                    body,
                    content_types or {},
                    enums or {},
                )
            )
            return fn

        return deco

    def install(self, app: web.Application) -> None:
        """Add every route to the app; ``{id}`` parameters match digits only.

        So a literal segment beside them (``/queue/retry`` next to ``/queue/{id}``) never
        collides with them, in routing or in the Allow header.
        """
        for r in self.routes:
            app.router.add_route(r.method, r.path.replace("{id}", r"{id:\d+}"), r.handler)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.0 document of every registered route."""
        paths: dict[str, Any] = {}
        for r in self.routes:
            responses: dict[str, Any] = {}
            for code, schema in sorted(r.responses.items()):
                ctype = r.content_types.get(code, "application/json")
                responses[str(code)] = {
                    "description": _REASONS.get(code, "response"),
                    "content": {ctype: {"schema": schema}},
                }
            responses.setdefault(
                "401",
                {
                    "description": "missing or wrong bearer token",
                    "content": {"application/json": {"schema": ERROR_SCHEMA}},
                },
            )
            op: dict[str, Any] = {
                "summary": r.summary,
                "operationId": f"{r.method.lower()}_{_op_name(r.path)}",
                "responses": responses,
                "security": [{"bearer": []}],
            }
            path_params = [
                {"name": seg[1:-1], "in": "path", "required": True, "schema": _path_schema(r, seg)}
                for seg in r.path.split("/")
                if seg.startswith("{")
            ]
            if r.params or path_params:
                op["parameters"] = [*path_params, *r.params]
            if r.body is not None:
                op["requestBody"] = {
                    "required": False,
                    "content": {"application/json": {"schema": r.body}},
                }
            paths.setdefault(r.path, {})[r.method.lower()] = op
        return {
            "openapi": "3.0.3",
            "info": {"title": "syncd admin API", "version": __version__},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "paths": paths,
        }


_REASONS = {
    200: "OK",
    202: "accepted",
    400: "bad request",
    404: "not found",
    409: "conflict",
    413: "body too large",
    503: "not available",
}


def _path_schema(route: ApiRoute, segment: str) -> dict[str, Any]:
    if segment == "{id}":
        return {"type": "string", "pattern": "^[0-9]+$"}
    values = route.enums.get(segment[1:-1])
    if values:
        return {"type": "string", "enum": list(values)}
    return {"type": "string"}


def _op_name(path: str) -> str:
    parts = [p.strip("{}") for p in path.split("/") if p and p not in ("api", "v1")]
    return "_".join(parts) or "root"


def check_bearer(request: web.Request, control: Control) -> None:
    """Raise 401 unless the request carries the admin token (compared in constant time)."""
    token = control.settings.daemon.admin_token
    if token is None:
        raise ApiError(401, "admin API disabled: set daemon.admin_token")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.get_secret_value().encode()
    ):
        raise ApiError(401, "missing or wrong bearer token")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty); 400 with a message otherwise."""
    limit = request.app[CONTROL_KEY].settings.daemon.body_timeout
    try:
        async with asyncio.timeout(limit):
            raw = await request.read()
    except TimeoutError:
        raise ApiError(408, f"body not received within {limit:g}s (daemon.body_timeout)") from None
    if not raw.strip():
        return {}
    body, problem = parse_json(raw)
    if problem is not None:
        raise ApiError(400, problem)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body
