"""Wiring: which components and HTTP routes make up the daemon.

`syncd run` and `syncd demo` hand these lists to the daemon; each feature plugs in here.
"""

from __future__ import annotations

from syncd.config import Settings
from syncd.daemon import Component, ComponentFactory, Daemon
from syncd.web.app import RouteInstaller


def _engine(_: Daemon) -> Component:
    from syncd.sync.component import SyncEngine
    from syncd.vendors.factory import build_connectors

    return SyncEngine(build_connectors)


def component_factories(settings: Settings) -> list[ComponentFactory]:
    """Components the daemon starts, in order (stopped in reverse)."""
    factories: list[ComponentFactory] = []
    if settings.hub is not None and settings.crm is not None:
        factories.append(_engine)
    if settings.hub is not None:
        from syncd.dbsync.component import component_factory

        # Always present with a hub, so [[dbsync]] entries added later arrive by SIGHUP.
        factories.append(component_factory())
    return factories


def route_installers() -> list[RouteInstaller]:
    """HTTP route groups added to the daemon's app."""
    from syncd.web import dbsync_api, overview_api, sync_api, webhooks

    return [webhooks.install, sync_api.install, overview_api.install, dbsync_api.install]
