"""The daemon's components as the handlers see them: typed application keys, filled once
when the app is built, so a request never searches or type-checks a component."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from syncd.dbsync.component import DbsyncComponent
from syncd.lifecycle import Component
from syncd.sync.component import SyncEngine
from syncd.web.api import CONTROL_KEY, ApiError

ENGINE_KEY = web.AppKey("engine", SyncEngine)
DBSYNC_KEY = web.AppKey("dbsync", DbsyncComponent)


def publish(app: web.Application, components: Iterable[Component]) -> None:
    """Put the components this app's routes use under their keys (absent: not configured)."""
    for comp in components:
        if isinstance(comp, SyncEngine):
            app[ENGINE_KEY] = comp
        elif isinstance(comp, DbsyncComponent):
            app[DBSYNC_KEY] = comp


def engine_of(app: web.Application) -> SyncEngine:
    """The sync engine, or 503 when none is configured."""
    engine = app.get(ENGINE_KEY)
    if engine is None:
        raise ApiError(503, "sync engine not configured (no [hub]/[crm] section)")
    return engine


def dbsync_of(app: web.Application) -> DbsyncComponent:
    """The dbsync component, or 503 when it is not running."""
    comp = app.get(DBSYNC_KEY)
    if comp is None:
        raise ApiError(503, "dbsync is not enabled in this daemon")
    return comp


def accepting_engine(app: web.Application) -> SyncEngine:
    """The engine for a webhook: 503 too once shutdown began, so the sender retries."""
    engine = engine_of(app)
    if not app[CONTROL_KEY].accepting:
        raise ApiError(503, "shutting down; retry later")
    return engine
