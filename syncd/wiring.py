"""Wiring: which components and HTTP routes make up the daemon.

`syncd run` and `syncd demo` hand these lists to the daemon; each feature plugs in here.
"""

from __future__ import annotations

from typing import Any

from syncd.config import Settings
from syncd.daemon import ComponentFactory, Daemon
from syncd.dbsync.component import DbsyncComponent
from syncd.lifecycle import Component
from syncd.sync.cluster import Heartbeat
from syncd.sync.component import SyncEngine
from syncd.vendors.factory import build_connectors
from syncd.web import dbsync_api, overview_api, sync_api, webhooks
from syncd.web.app import RouteInstaller


def sync_engine(daemon: Daemon) -> Component:
    """The two-way sync engine, with the connectors the config names."""
    crm, hub = build_connectors(daemon.settings)
    return SyncEngine(daemon, daemon.store, crm, hub)


def dbsync(daemon: Daemon) -> Component:
    """dbsync, with the shared hub connector factory and MySQL sources."""
    return DbsyncComponent(daemon, daemon.store)


def heartbeat(daemon: Daemon) -> Component:
    """Every daemon beats into the store with its view of the shared state (the sync
    engine's directions, when it has one), and closes the runs of instances gone."""

    def view() -> dict[str, Any]:
        return dict(daemon.status_extra().get("directions") or {})

    return Heartbeat(daemon, daemon.store, view)


def component_factories(settings: Settings) -> list[ComponentFactory]:
    """Components the daemon starts, in order (stopped in reverse)."""
    factories: list[ComponentFactory] = [heartbeat]
    if settings.hub is not None and settings.crm is not None:
        factories.append(sync_engine)
    if settings.hub is not None:
        # Always present with a hub, so [[dbsync]] entries added later arrive by SIGHUP.
        factories.append(dbsync)
    return factories


def route_installers() -> list[RouteInstaller]:
    """HTTP route groups added to the daemon's app."""
    return [webhooks.install, sync_api.install, overview_api.install, dbsync_api.install]
