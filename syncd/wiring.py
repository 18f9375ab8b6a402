"""Wiring: which components, HTTP routes and CLI commands make up syncd.

The daemon and CLI know only these lists; each part of syncd plugs itself in here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from syncd.config import Settings
from syncd.daemon import Component, ComponentFactory, Daemon
from syncd.web.app import RouteInstaller

AddCommand = Callable[[str, Any, str], argparse.ArgumentParser]


def _engine(_: Daemon) -> Component:
    from syncd.connectors.factory import build_connectors
    from syncd.engine.service import SyncEngine

    return SyncEngine(build_connectors)


def component_factories(settings: Settings) -> list[ComponentFactory]:
    """Components the daemon starts, in order (stopped in reverse)."""
    factories: list[ComponentFactory] = []
    if settings.hub is not None and settings.crm is not None:
        factories.append(_engine)
    if settings.hub is not None:
        from syncd.dbsync_component import component_factory

        # Always present with a hub, so [[dbsync]] entries added later arrive by SIGHUP.
        factories.append(component_factory())
    return factories


def route_installers() -> list[RouteInstaller]:
    """HTTP route groups added to the daemon's app."""
    from syncd.web import dbsync_api, engine_api, overview_api, webhooks

    return [webhooks.install, engine_api.install, overview_api.install, dbsync_api.install]


def extend_cli(sub: Any, add: AddCommand) -> None:
    """Add the subcommands of later parts (sandbox, demo, flush, queue, dbsync …)."""
    from syncd import cli_dbsync, cli_overview, cli_sandbox, cli_store, cli_sync

    cli_sync.register(sub, add)
    cli_overview.register(sub, add)
    cli_dbsync.register(sub, add)
    cli_sandbox.register(sub, add)
    cli_store.register(sub, add)
