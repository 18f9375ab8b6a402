"""What the HTTP layer may read from and ask of the running daemon."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from syncd.config import Settings
from syncd.store.base import StateStore


@dataclass(frozen=True)
class Check:
    """One readiness check: ok or not, and a short operator-facing detail."""

    ok: bool
    detail: str = ""


class Control(Protocol):
    """The daemon as seen by the web layer: current settings, store, state and actions."""

    @property
    def settings(self) -> Settings:
        """The configuration in force (changes on reload)."""

    @property
    def store(self) -> StateStore:
        """The state store."""

    @property
    def started_at(self) -> float:
        """Unix time the daemon started."""

    @property
    def accepting(self) -> bool:
        """False once shutdown began: webhooks answer 503 so senders retry elsewhere/later."""

    def liveness(self) -> dict[str, Check]:
        """Event loop and scheduler state, for /healthz."""

    def readiness(self) -> dict[str, Check]:
        """Store, scheduler, connectors and integration errors, for /readyz."""

    def job_schedule(self) -> list[dict[str, Any]]:
        """Scheduled jobs with their next run time."""

    def component(self, name: str) -> object | None:
        """A running component by name (e.g. "engine"), or None."""

    def status_extra(self) -> dict[str, Any]:
        """Engine state to show in /api/v1/status (paused directions, last runs …)."""
