"""Whether a direction may write: operator pause and integration-wide errors, persisted."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from syncd import metrics
from syncd.errors import IntegrationError, StoreError
from syncd.logging import get_logger
from syncd.model import Direction, ErrorCategory
from syncd.store.protocols import CursorStore, IntegrationErrorStore

log = get_logger("syncd.sync")


class GateStore(CursorStore, IntegrationErrorStore, Protocol):
    """Where a gate keeps its state: the pause flag as a cursor, and integration errors."""


# How stale this instance's copy of the shared state may be before a flush or pull reads
# it again: another instance's pause or resume takes effect here within this many seconds.
SHARED_STATE_MAX_AGE = 2.0


class DirectionGate:
    """Pause/resume of one direction and the integration error pausing it, kept in the store.

    Changes keep queueing while a direction is closed; nothing is written until it opens.
    The state is shared by every instance on the store: each reads it again when its copy
    is older than SHARED_STATE_MAX_AGE (`refresh`), so a pause sent to any one holds all.
    """

    def __init__(self, direction: Direction, store: GateStore) -> None:
        self.direction = direction
        self._store = store
        self.paused = False
        self.error: tuple[ErrorCategory, str] | None = None
        self.read_at: float | None = None  # time.time() of the last read of the shared state
        self._read_mono = float("-inf")
        # One read or change of the state at a time: a read that a change overtook would
        # put the older value back (and call it fresh).
        self._lock = asyncio.Lock()

    @property
    def _pause_key(self) -> str:
        return pause_key(self.direction)

    async def load(self) -> None:
        """Read the shared state: the pause flag and the active integration error."""
        async with self._lock:
            await self._load()

    async def _load(self) -> None:
        paused = await shared_pause(self._store, self.direction)
        errors = [
            e for e in await self._store.integration_errors() if e.direction is self.direction
        ]
        if paused != self.paused and self.read_at is not None:
            log.info(
                "direction_paused" if paused else "direction_resumed",
                direction=self.direction.value,
                by="another instance",
            )
        self.paused = paused
        for cat in ErrorCategory:
            active = any(e.category is cat for e in errors)
            if active or (self.error is not None and self.error[0] is cat):
                metrics.INTEGRATION_ERROR_ACTIVE.labels(self.direction.value, cat.value).set(
                    int(active)
                )
        self.error = (errors[-1].category, errors[-1].message) if errors else None
        self.read_at = time.time()
        self._read_mono = time.monotonic()

    async def refresh(self, max_age: float = SHARED_STATE_MAX_AGE) -> None:
        """Read the shared state again if this copy is older than `max_age` seconds; an
        unreachable store keeps the last copy (the store supervisor reports the outage)."""
        if time.monotonic() - self._read_mono < max_age:
            return
        try:
            await self.load()
        except StoreError:
            metrics.STORE_ERRORS.labels("gate_refresh").inc()

    def view(self) -> dict[str, Any]:
        """This instance's view of the direction, for the status and the heartbeat."""
        return {
            "paused": self.paused,
            "error": None
            if self.error is None
            else {"category": self.error[0].value, "message": self.error[1]},
            "read_at": self.read_at,
        }

    async def set_paused(self, paused: bool) -> None:
        """Operator pause/resume; survives restarts."""
        async with self._lock:
            await self._store.set_cursor(self._pause_key, "1" if paused else "0")
            self.paused = paused
            self.read_at = time.time()
            self._read_mono = time.monotonic()
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
        async with self._lock:
            await self._report(exc)

    async def _report(self, exc: IntegrationError) -> None:
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
        async with self._lock:
            await self._recovered()

    async def _recovered(self) -> None:
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


def pause_key(direction: Direction) -> str:
    """The named value in the store holding a direction's operator pause."""
    return f"paused:{direction.value}"


async def shared_pause(store: GateStore, direction: Direction) -> bool:
    """Whether an operator paused `direction` (for every instance on the store)."""
    return (await store.get_cursor(pause_key(direction))) == "1"
