"""What every vendor simulator shares: fault knobs, a write ledger, request counts, admin routes.

Each simulator builds its aiohttp app with `make_app`, which installs a middleware that counts
requests per endpoint, applies the armed faults (latency, N failures with 503/429) before the
vendor handler runs, and mounts ``/_sandbox/...`` admin routes for tests and manual use:

- ``GET  /_sandbox/stats``   request counts per endpoint and the ledger size
- ``GET  /_sandbox/ledger``  every write received (``?since=N`` to page)
- ``POST /_sandbox/faults``  JSON, any of: ``fail_next`` (N), ``status`` (503|429),
  ``retry_after``, ``fail_ratio``, ``fail_paths``, ``latency``, ``latency_after``,
  ``slow_paths``, ``expire_tokens``, ``revoke_auth``, ``fail_emails``, ``exhaust_quota``;
  Salesforce also ``duplicate_rules`` (true, false, "alert" or "block"); HubSpot also
  ``search_lag`` (seconds before search finds a write; 0: instantly consistent)
- ``POST /_sandbox/reset``   clear faults, ledger and counters (data stays)
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorBody = Callable[[int, float | None], web.Response]


@dataclass
class Faults:
    """Faults armed by a test; each simulator interprets the vendor-specific ones."""

    fail_next: int = 0
    status: int = 503
    retry_after: float | None = None
    fail_ratio: float = 0.0
    latency: float = 0.0
    latency_after: float = 0.0  # delay the answer of an already-applied request
    expire_tokens: bool = False
    fail_emails: set[str] = field(default_factory=set)
    exhaust_quota: bool = False
    revoke_auth: bool = False
    fail_paths: tuple[str, ...] = ()
    slow_paths: tuple[str, ...] = ()  # where latency applies (all paths when empty)

    def apply(self, body: dict[str, Any]) -> None:
        """Arm faults from an admin request body."""
        for key in ("fail_next", "status", "fail_ratio", "latency", "latency_after"):
            if key in body:
                setattr(self, key, type(getattr(self, key))(body[key]))
        if "retry_after" in body:
            ra = body["retry_after"]
            self.retry_after = None if ra is None else float(ra)
        for key in ("fail_paths", "slow_paths"):
            if key in body:
                setattr(self, key, tuple(str(p) for p in body[key]))
        if body.get("expire_tokens"):
            self.expire_tokens = True
        if "fail_emails" in body:
            self.fail_emails = {str(e).lower() for e in body["fail_emails"]}
        for flag in ("exhaust_quota", "revoke_auth"):
            if flag in body:
                setattr(self, flag, bool(body[flag]))


class LedgerEntry(NamedTuple):
    """One write the simulator applied: which endpoint, which record, what.

    A named tuple: a big import records one per contact, and a tuple is a third of the
    memory of an object with a __dict__."""

    seq: int
    at: float
    endpoint: str
    object: str
    record_id: str
    key: str | None
    created: bool
    fields: dict[str, Any]


class SandboxBase:
    """State every simulator has; vendor simulators subclass it and add their data."""

    vendor = "sandbox"

    def __init__(self, seed: int = 42) -> None:
        self.faults = Faults()
        self.ledger: list[LedgerEntry] = []
        self.requests: Counter[str] = Counter()
        self.rng = random.Random(seed)
        self._seq = 0

    def record_write(
        self,
        endpoint: str,
        obj: str,
        record_id: str,
        fields: dict[str, Any],
        *,
        key: str | None = None,
        created: bool = False,
        at: float | None = None,
    ) -> None:
        """Append one applied write to the ledger, made at `at` (default: now); an import
        passes its one instant for all of its contacts."""
        self._seq += 1
        when = time.time() if at is None else at
        self.ledger.append(
            LedgerEntry(self._seq, when, endpoint, obj, record_id, key, created, fields)
        )

    def apply_faults(self, body: dict[str, Any]) -> None:
        """Arm what ``POST /_sandbox/faults`` asks for; a simulator adds its own settings."""
        self.faults.apply(body)

    def reset(self) -> None:
        """Clear faults, ledger and counters; keep the data."""
        self.faults = Faults()
        self.ledger.clear()
        self.requests.clear()

    def endpoint_of(self, request: web.Request) -> str:
        """The name requests are counted under: the matched route, method first."""
        info = request.match_info.route.resource
        canonical = info.canonical if info is not None else request.path
        return f"{request.method} {canonical}"

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        """The vendor's body for an injected 5xx/429; simulators override for exact bodies."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return web.json_response({"message": "Service Unavailable"}, status=status, headers=headers)

    def writes_for(self, obj: str | None = None) -> list[LedgerEntry]:
        """Ledger entries, optionally for one object."""
        return [e for e in self.ledger if obj is None or e.object == obj]


SANDBOX_KEY = web.AppKey("sandbox", SandboxBase)


def make_app(sandbox: SandboxBase) -> web.Application:
    """An aiohttp app with the fault/ledger middleware and admin routes; add vendor routes."""

    @web.middleware
    async def faults_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        sandbox.requests[sandbox.endpoint_of(request)] += 1
        f = sandbox.faults
        slow = not f.slow_paths or any(p in request.path for p in f.slow_paths)
        if f.latency > 0 and slow:
            await asyncio.sleep(f.latency)
        path_hit = not f.fail_paths or any(request.path.startswith(p) for p in f.fail_paths)
        if f.fail_next > 0 and path_hit:
            f.fail_next -= 1
            return sandbox.error_response(f.status, f.retry_after)
        if f.fail_ratio > 0 and path_hit and sandbox.rng.random() < f.fail_ratio:
            return sandbox.error_response(f.status, f.retry_after)
        resp = await handler(request)
        if f.latency_after > 0 and slow:
            # The write is applied; only the answer is late (a crash here loses the ack).
            await asyncio.sleep(f.latency_after)
        return resp

    app = web.Application(middlewares=[faults_mw], client_max_size=64 * 1024 * 1024)
    app[SANDBOX_KEY] = sandbox

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {"requests": dict(sandbox.requests), "ledger": len(sandbox.ledger)}
        )

    async def ledger(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        rows = [e._asdict() for e in sandbox.ledger if e.seq > since]
        return web.json_response({"entries": rows})

    async def faults(request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        try:
            sandbox.apply_faults(body)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def reset(_: web.Request) -> web.Response:
        sandbox.reset()
        return web.json_response({"ok": True})

    app.router.add_get("/_sandbox/stats", stats)
    app.router.add_get("/_sandbox/ledger", ledger)
    app.router.add_post("/_sandbox/faults", faults)
    app.router.add_post("/_sandbox/reset", reset)
    return app


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> web.AppRunner:
    """Start `app` on host:port (0 picks a free port); the bound port is on the runner."""
    # A simulator has nothing to drain: requests still held by an injected latency (a
    # minute, in some fault tests) are dropped after a moment rather than awaited.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


# New objects per pass below which a simulator counts as idle (the event loop's own
# bookkeeping while it waits makes far fewer).
IDLE_ALLOCATIONS = 1000


async def keep_data_out_of_collector(every: float = 0.1) -> None:
    """For a simulator serving in its own process, until cancelled: several times a second,
    move what survived into the collector's permanent generation.

    A simulator's data only grows (a million imported contacts are millions of objects) and
    every full collection walked all of it again: about half the CPU of a large import. The
    data not yet frozen is walked again by each full pass too, so it is frozen often: at 2 s
    an import cost 12.8 µs a contact, at 0.1 s 8 µs. Young garbage is collected first, so only
    cycles that were already old stay uncollected; an idle simulator skips the pass.
    """
    while True:
        await asyncio.sleep(every)
        young, collected, _ = gc.get_count()
        # Survivors to move: young collections ran since the last pass, or many new objects
        # wait for the first one (a process with a high threshold, such as the daemon's).
        if collected or young >= IDLE_ALLOCATIONS:
            gc.collect(1)
            gc.freeze()


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on."""
    for addr in runner.addresses:
        return int(addr[1])
    raise RuntimeError("runner is not listening")
