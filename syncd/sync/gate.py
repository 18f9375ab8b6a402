"""Whether a direction may write: operator pause and integration-wide errors, persisted."""

from __future__ import annotations

from typing import Protocol

from syncd import metrics
from syncd.errors import IntegrationError, StoreError
from syncd.logging import get_logger
from syncd.model import Direction, ErrorCategory
from syncd.store.protocols import CursorStore, IntegrationErrorStore

log = get_logger("syncd.sync")


class GateStore(CursorStore, IntegrationErrorStore, Protocol):
    """Where a gate keeps its state: the pause flag as a cursor, and integration errors."""


class DirectionGate:
    """Pause/resume of one direction and the integration error pausing it, kept in the store.

    Changes keep queueing while a direction is closed; nothing is written until it opens.
    """

    def __init__(self, direction: Direction, store: GateStore) -> None:
        self.direction = direction
        self._store = store
        self.paused = False
        self.error: tuple[ErrorCategory, str] | None = None

    @property
    def _pause_key(self) -> str:
        return f"paused:{self.direction.value}"

    async def load(self) -> None:
        """Restore pause state and active integration errors after a restart."""
        self.paused = (await self._store.get_cursor(self._pause_key)) == "1"
        for err in await self._store.integration_errors():
            if err.direction is self.direction:
                self.error = (err.category, err.message)
                metrics.INTEGRATION_ERROR_ACTIVE.labels(
                    self.direction.value, err.category.value
                ).set(1)

    async def set_paused(self, paused: bool) -> None:
        """Operator pause/resume; survives restarts."""
        await self._store.set_cursor(self._pause_key, "1" if paused else "0")
        self.paused = paused
        log.info(
            "direction_paused" if paused else "direction_resumed", direction=self.direction.value
        )

    @property
    def blocked(self) -> str | None:
        """Why nothing may be written now, or None."""
        if self.paused:
            return "paused by an operator"
        return None

    async def report(self, exc: IntegrationError) -> None:
        """Record an integration-wide error: the direction pauses until an attempt succeeds."""
        message = str(exc)
        first = self.error is None or self.error[0] is not exc.category
        self.error = (exc.category, message)
        metrics.INTEGRATION_ERROR_ACTIVE.labels(self.direction.value, exc.category.value).set(1)
        if first:
            log.error(
                "integration_error",
                direction=self.direction.value,
                category=exc.category.value,
                error=message,
            )
        try:
            await self._store.set_integration_error(self.direction, exc.category, message)
        except StoreError:
            metrics.STORE_ERRORS.labels("integration_error").inc()

    async def recovered(self) -> None:
        """A write succeeded: clear the integration error, if any."""
        if self.error is None:
            return
        category = self.error[0]
        self.error = None
        metrics.INTEGRATION_ERROR_ACTIVE.labels(self.direction.value, category.value).set(0)
        log.info("integration_recovered", direction=self.direction.value, category=category.value)
        try:
            await self._store.clear_integration_error(self.direction)
        except StoreError:
            metrics.STORE_ERRORS.labels("integration_error").inc()
