"""Shared fixtures of the overview tests: a live app in a thread over a real store, fakes.

The app runs on its own event loop in a background thread, so synchronous clients (urllib,
the CLI, schemathesis, Playwright) can talk to it over loopback HTTP. Seeding goes through
the store's own methods on that loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from syncd.config import Settings
from syncd.lifecycle import Component
from syncd.model import (
    Change,
    DeletedRecord,
    Direction,
    EntryStatus,
    ErrorCategory,
    FieldInfo,
    ObjectType,
    Page,
    QuotaState,
    Record,
    WriteItem,
    WriteOp,
    WriteResult,
    parse_tags,
)
from syncd.rules import Condition, Group, Rule
from syncd.store.protocols import StateStore
from syncd.store.sqlite import SqliteStore
from syncd.store.types import EntryFilter, RecordLink
from syncd.sync.component import SyncEngine
from syncd.web import sync_api, webhooks
from syncd.web.app import RouteInstaller, create_app
from syncd.web.context import Check
from syncd.web.overview_api import install

T = TypeVar("T")
TOKEN = "overview-admin-token-0123456789"
TAGS = ["added-to-salesforce-contact"]


WEBHOOK_TOKEN = "overview-webhook-token-0123456789"
WEBHOOK_SECRET = "overview-hubspot-client-secret"


def make_settings(
    state: Path,
    token: str = TOKEN,
    engine: bool = False,
    hub: str = "activecampaign",
    daemon: dict[str, Any] | None = None,
) -> Settings:
    """Settings for an in-process app (hub/crm sections only when an engine is wanted)."""
    raw: dict[str, Any] = {
        "daemon": {"admin_token": token, "state_dir": str(state), **(daemon or {})}
    }
    if engine:
        raw["hub"] = {
            "kind": hub,
            "base_url": "http://127.0.0.1:9/api/3",
            "api_token": "hub-token",
            "webhook_token": WEBHOOK_TOKEN,
            "webhook_secret": WEBHOOK_SECRET,
        }
        raw["crm"] = {"client_id": "cid", "client_secret": "secret"}
        raw["inbound"] = {"flush_interval": 3600, "flush_size": 10_000, "retry_base_delay": 0}
    return Settings(**raw)


class FakeControl:
    """The daemon as the web layer sees it, over a real store."""

    def __init__(self, settings: Settings, store: StateStore) -> None:
        self._settings = settings
        self._store = store
        self.components: list[Component] = []

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def store(self) -> StateStore:
        return self._store

    @property
    def started_at(self) -> float:
        return time.time() - 5

    @property
    def accepting(self) -> bool:
        return True

    def liveness(self) -> dict[str, Check]:
        return {"loop": Check(True)}

    def readiness(self) -> dict[str, Check]:
        return {"store": Check(True)}

    def job_schedule(self) -> list[dict[str, Any]]:
        return []

    @property
    def started_components(self) -> list[Component]:
        return self.components

    def status_extra(self) -> dict[str, Any]:
        return {}


@dataclass
class FakeCrm:
    """An in-memory CRM: upserts by external id, rejects emails listed in `reject`."""

    name: str = "salesforce"
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    reject: set[str] = field(default_factory=set)
    writes: int = 0

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def check_auth(self) -> None: ...

    async def changed_since(
        self,
        obj: ObjectType,
        cursor: str | None,
        *,
        fields: Sequence[str] = (),
        criteria: Rule | None = None,
    ) -> AsyncIterator[Page]:
        # The flush asks for its records by id and by email (``Id IN … OR Email IN …``).
        conditions = criteria.items if isinstance(criteria, Group) else (criteria,)
        wanted = {
            (c.field, str(v).lower())
            for c in conditions
            if isinstance(c, Condition) and isinstance(c.value, tuple)
            for v in c.value
        }
        recs = tuple(
            Record(obj, rid, dict(f))
            for rid, f in self.records.items()
            if ("Id", rid.lower()) in wanted or ("Email", str(f.get("Email", "")).lower()) in wanted
        )
        yield Page(recs, None)

    async def get_by_ids(
        self, obj: ObjectType, ids: Sequence[str], *, fields: Sequence[str] = ()
    ) -> list[Record]:
        return [Record(obj, i, dict(self.records[i])) for i in ids if i in self.records]

    async def deleted_since(
        self, obj: ObjectType, cursor: str | None
    ) -> tuple[list[DeletedRecord], str | None]:
        return [], cursor

    async def write(
        self,
        obj: ObjectType,
        op: WriteOp,
        items: Sequence[WriteItem],
        *,
        match_field: str | None = None,
    ) -> list[WriteResult]:
        self.writes += 1
        out = []
        for item in items:
            email = str(item.fields.get("Email", "")).lower()
            if email in self.reject:
                out.append(
                    WriteResult(
                        ok=False,
                        error_category=ErrorCategory.VALIDATION,
                        error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
                        error_message="Phone: must have 10 digits ['Phone']",
                    )
                )
                continue
            rid = item.id or f"003{len(self.records) + 1:012d}"
            self.records[rid] = {**self.records.get(rid, {}), **item.fields}
            out.append(WriteResult(ok=True, id=rid, created=item.id is None))
        return out

    async def describe(self, obj: ObjectType) -> list[FieldInfo]:
        return []

    def quota(self) -> QuotaState | None:
        return QuotaState(used=1234, limit=15000)


@dataclass
class FakeHub(FakeCrm):
    """An in-memory hub with the few hub-only calls the overview needs."""

    name: str = "activecampaign"
    supports_last_broadcast: bool = False
    keeps_primary_companies: bool = False
    emails_per_lookup: int = 1

    async def write(
        self,
        obj: ObjectType,
        op: WriteOp,
        items: Sequence[WriteItem],
        *,
        match_field: str | None = None,
        need_ids: bool = True,
    ) -> list[WriteResult]:
        out = []
        for item in items:
            rid = item.id or str(100000 + len(self.records) + 1)
            self.records[rid] = {**self.records.get(rid, {}), **item.fields}
            out.append(WriteResult(ok=True, id=rid, created=item.id is None))
        return out

    async def find_by_emails(self, emails: Sequence[str]) -> dict[str, Record]:
        return {}

    async def get_by_ids(
        self, obj: ObjectType, ids: Sequence[str], *, fields: Sequence[str] = ()
    ) -> list[Record]:
        # A hub reads a contact's tags apart from its fields.
        return [
            Record(obj, i, dict(self.records[i]), tags=parse_tags(self.records[i].get("tags")))
            for i in ids
            if i in self.records
        ]

    async def add_tags(self, contact_id: str, tags: Sequence[str]) -> None: ...
    async def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None: ...

    async def get_tags(self, contact_id: str) -> frozenset[str]:
        return frozenset()

    def quota(self) -> QuotaState | None:
        return None


IN, OUT = Direction.INBOUND, Direction.OUTBOUND


class FakeHost:
    """What SyncEngine asks of its daemon, for on-demand pulls."""

    def __init__(self, live: LiveApp) -> None:
        self.live = live
        self.instance_id = "test"
        # Never started: the engine's scheduled pulls stay pending, tests pull on demand.
        self.scheduler = AsyncIOScheduler(timezone="UTC")

    @property
    def settings(self) -> Settings:
        return self.live.settings

    @property
    def store(self) -> StateStore:
        return self.live.store  # type: ignore[no-any-return]

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.live._tasks.append(task)
        return task

    async def wait_store(self) -> None:
        return None


class LiveApp:
    """The overview app on a loopback port, served from a background event loop."""

    def __init__(
        self,
        tmp: Path,
        *,
        engine: bool = False,
        token: str = TOKEN,
        store: Callable[[], StateStore] | None = None,
        hub: str = "activecampaign",
        daemon: dict[str, Any] | None = None,
        installers: Sequence[RouteInstaller] = (),
    ) -> None:
        self._more = tuple(installers)
        self.token = token
        self.settings = make_settings(tmp, token, engine, hub, daemon)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.store: Any = store() if store else SqliteStore(tmp / "overview.sqlite3")
        self.control = FakeControl(self.settings, self.store)
        self.crm = FakeCrm()
        self.hub = FakeHub()
        self.engine: SyncEngine | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = self.run(self._start(engine))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the app's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self, with_engine: bool) -> int:
        await self.store.open()
        if with_engine:
            # The engine's parts without its scheduler: flushes and pulls run for real
            # against the in-memory connectors.
            engine = SyncEngine(FakeHost(self), self.store, self.crm, self.hub)
            await engine.start()
            # Ready before the tests seed the store: a start reclaims an embedded store's
            # leftover claims, which must not be the tests' own.
            await engine.wait_started()
            self.control.components.append(engine)
            self.engine = engine
        self.app = create_app(
            self.control, installers=[sync_api.install, webhooks.install, install, *self._more]
        )
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        """One request; never raises on HTTP errors."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        tok = self.token if token is None else token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        """Request and decode JSON."""
        status, raw, _ = self.request(method, path, body, **kw)
        return status, json.loads(raw) if raw else None

    def close(self) -> None:
        """Stop the server, the engine task, the store and the loop."""

        async def stop() -> None:
            for t in self._tasks:
                t.cancel()
            await self.runner.cleanup()
            await self.store.close()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def change(i: int, *, direction: Direction = Direction.INBOUND, source: str = "webhook") -> Change:
    """A tagged contact change numbered `i`."""
    fields = {
        "email": f"person{i}@example.com",
        "firstName": "Ada" if i % 2 else "Grace",
        "lastName": f"Lovelace{i}",
        "phone": f"555-{i:04d}",
        "tags": TAGS,
    }
    return Change(
        direction=direction,
        object=ObjectType.CONTACT if i % 5 else ObjectType.LEAD,
        record_key=str(1000 + i),
        source=source,
        fields=fields,
        email=fields["email"],
        name=f"{fields['firstName']} {fields['lastName']}",
    )


@dataclass(frozen=True)
class Seeded:
    """Entry ids of the fixture by the status they were left in."""

    processed: list[int]
    error: list[int]
    excluded: list[int]
    pending: list[int]


async def seed(store: StateStore, n: int = 40, *, outbound: int = 10) -> Seeded:
    """n inbound and `outbound` outbound entries: a quarter each processed, error, excluded."""
    await store.enqueue([change(i) for i in range(n)])
    await store.enqueue(
        [change(10_000 + i, direction=Direction.OUTBOUND, source="pull") for i in range(outbound)]
    )
    q = n // 4
    claimed = await store.claim_pending(
        Direction.INBOUND, limit=3 * q, owner="seed", lease_seconds=600
    )
    done, err, exc = claimed[:q], claimed[q : 2 * q], claimed[2 * q : 3 * q]
    for e in done:
        fields = {"Email": e.email, "LastName": e.payload["lastName"]}
        await store.complete(
            e.id,
            owner="seed",
            transferred={"object": e.object.value, "fields": fields},
            skipped={"Phone": "conflict: the CRM value wins (sync.conflict_winner = crm)"},
        )
    for e in err:
        await store.fail(
            e.id,
            owner="seed",
            category=ErrorCategory.VALIDATION,
            code="REQUIRED_FIELD_MISSING",
            message="Required fields are missing: [LastName]",
        )
    for e in exc:
        await store.exclude(e.id, owner="seed", reason="untagged: no Salesforce sync tag")
    pending = await store.list_entries(EntryFilter(status=(EntryStatus.PENDING,)), limit=100_000)
    return Seeded(
        processed=[e.id for e in done],
        error=[e.id for e in err],
        excluded=[e.id for e in exc],
        pending=[e.id for e in pending],
    )


async def seed_links(store: StateStore, n: int = 6) -> list[int]:
    """n links; every third is deleted on the CRM side."""
    ids = []
    for i in range(n):
        ids.append(
            await store.upsert_link(
                RecordLink(
                    object=ObjectType.CONTACT,
                    hub_id=str(5000 + i),
                    crm_id=f"003A{i:011d}",
                    email=f"linked{i}@example.com",
                    name=f"Linked Person {i}",
                    sync_tags=frozenset(TAGS),
                    deleted_side="crm" if i % 3 == 0 else None,
                )
            )
        )
    return ids


Seeder = Callable[[StateStore], Awaitable[Any]]


async def seed_repeated_failures(store: StateStore, records: int = 101, times: int = 3) -> None:
    """`records` contacts each failing `times` times: a new change of each, claimed and
    failed, round after round (as a record rejected by every retry of the flush)."""
    numbers = [i for i in range(1, 5 * records) if i % 5][:records]  # contacts, not leads
    for _ in range(times):
        await store.enqueue([change(i) for i in numbers])
        claimed = await store.claim_pending(
            Direction.INBOUND, limit=records, owner="seed", lease_seconds=600
        )
        assert len(claimed) == records
        for e in claimed:
            await store.fail(
                e.id,
                owner="seed",
                category=ErrorCategory.REJECTED,
                code="DUPLICATE_VALUE",
                message="duplicate value found",
            )
