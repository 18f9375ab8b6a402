"""Wiring: which components, HTTP routes and CLI commands make up syncd.

The daemon and CLI know only these lists; each part of syncd plugs itself in here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from syncd.config import Settings
from syncd.daemon import ComponentFactory
from syncd.web.app import RouteInstaller

AddCommand = Callable[[str, Any, str], argparse.ArgumentParser]


def component_factories(settings: Settings) -> list[ComponentFactory]:
    """Components the daemon starts, in order (stopped in reverse)."""
    return []


def route_installers() -> list[RouteInstaller]:
    """HTTP route groups added to the daemon's app."""
    return []


def extend_cli(sub: Any, add: AddCommand) -> None:
    """Add the subcommands of later parts (sandbox, demo, flush, queue, dbsync …)."""
