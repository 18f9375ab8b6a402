"""How the daemon and its components meet: the host a component is built with, the
lifecycle every component follows, and the readiness check it reports.

Ground floor, so the features (`sync`, `dbsync`) can name what they need from the daemon
without importing it; `daemon.py` is the one real host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from syncd.config import Settings


@dataclass(frozen=True)
class Check:
    """One readiness check: ok or not, and a short operator-facing detail."""

    ok: bool
    detail: str = ""


class Host(Protocol):
    """What a component is given by the daemon that hosts it."""

    @property
    def settings(self) -> Settings:
        """The configuration in force (changes on reload)."""

    scheduler: AsyncIOScheduler
    instance_id: str

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run an owned background task; if it crashes, the daemon stops loudly."""

    async def wait_store(self) -> None:
        """Wait until the store has been opened (migrated) once."""


class Component(Protocol):
    """A part of the daemon with its own lifecycle (the sync engine, dbsync …).

    Built complete (store, connectors, scheduler given to its constructor); `start` only
    starts its tasks.
    """

    name: str

    async def start(self) -> None:
        """Start after the store and scheduler, before the HTTP server."""

    async def stop(self, deadline: float) -> None:
        """Finish in-flight work before the monotonic `deadline`, then stop."""

    def reload(self, settings: Settings) -> None:
        """Apply a new, validated configuration."""

    def readiness(self) -> dict[str, Check]:
        """Readiness checks this component contributes."""

    def status(self) -> dict[str, Any]:
        """Extra fields for /api/v1/status."""

    def flush_requested(self) -> None:
        """SIGUSR1: flush buffered work now."""
