"""What the HTTP layer may read from and ask of the running daemon."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from syncd.config import Settings
from syncd.lifecycle import Check, Component
from syncd.store.protocols import StateStore


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

    @property
    def started_components(self) -> Sequence[Component]:
        """The components started so far (the web layer publishes them under typed keys)."""

    def status_extra(self) -> dict[str, Any]:
        """Engine state to show in /api/v1/status (paused directions, last runs …)."""
