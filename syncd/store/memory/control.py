"""The memory store's small tables: cursors, integration errors, dbsync rows and job locks
(the rules of ``syncd/store/records.py`` and ``syncd/store/dbsync_ops.py``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from syncd.model import Direction, ErrorCategory
from syncd.store.memory.state import MemoryState
from syncd.store.sql.dialect import utcnow
from syncd.store.types import DbsyncRow, InstanceBeat, IntegrationErrorRecord


class ControlOps(MemoryState):
    """Cursors, integration errors, dbsync rows and job locks of the StateStore protocol."""

    # cursors -------------------------------------------------------------------------------
    async def get_cursor(self, name: str) -> str | None:
        """A named cursor (e.g. ``outbound:contact``)."""
        self._live()
        return self._cursors.get(name)

    async def set_cursor(self, name: str, value: str) -> None:
        """Store a named cursor."""
        self._live()
        self._cursors[name] = value

    # integration errors --------------------------------------------------------------------
    async def set_integration_error(
        self, direction: Direction, category: ErrorCategory, message: str
    ) -> None:
        """Record (or refresh) an integration-wide error; `since` keeps its first time."""
        self._live()
        key = (Direction(direction), ErrorCategory(category))
        now = utcnow()
        old = self._integration.get(key)
        self._integration[key] = (
            IntegrationErrorRecord(key[0], key[1], message, now, now)
            if old is None
            else replace(old, message=message, updated_at=now)
        )

    async def clear_integration_error(
        self, direction: Direction, category: ErrorCategory | None = None
    ) -> int:
        """Clear a direction's integration errors (one category or all); how many."""
        self._live()
        doomed = [
            key
            for key in self._integration
            if key[0] == direction and (category is None or key[1] == category)
        ]
        for key in doomed:
            del self._integration[key]
        return len(doomed)

    async def integration_errors(self) -> list[IntegrationErrorRecord]:
        """Active integration-wide errors, oldest first."""
        self._live()
        return sorted(
            self._integration.values(),
            key=lambda e: (e.since, e.direction.value, e.category.value),
        )

    # dbsync rows ---------------------------------------------------------------------------
    async def dbsync_rows(self, dbsync: str, row_keys: Sequence[str]) -> dict[str, DbsyncRow]:
        """What the last runs wrote for these source rows."""
        self._live()
        rows = self._dbsync.get(dbsync, {})
        return {k: rows[k] for k in row_keys if k in rows}

    async def upsert_dbsync_rows(self, rows: Sequence[DbsyncRow]) -> None:
        """Record what a run wrote; a row keeps its id, the last value for a key wins."""
        self._live()
        latest = {(r.dbsync, r.row_key): r for r in rows}
        # In key order, as the SQL stores write them: new rows take their ids in that order.
        for dbsync, row_key in sorted(latest):
            r = latest[(dbsync, row_key)]
            table = self._dbsync.setdefault(dbsync, {})
            old = table.get(row_key)
            row_id = old.id if old is not None else next(self._dbsync_ids)
            table[row_key] = DbsyncRow(
                dbsync, row_key, r.email, r.hub_id, r.content_hash, int(r.run_id), row_id
            )

    async def dbsync_rows_not_seen(
        self, dbsync: str, run_id: int, *, after_key: str = "", limit: int = 1000
    ) -> list[DbsyncRow]:
        """Rows of this dbsync whose last run is older than `run_id`, in key order."""
        self._live()
        rows = self._dbsync.get(dbsync, {})
        keys = sorted(k for k, r in rows.items() if k > after_key and r.run_id < run_id)
        return [rows[k] for k in keys[: max(limit, 0)]]

    async def delete_dbsync_rows(self, dbsync: str, row_keys: Sequence[str]) -> None:
        """Forget rows removed from the list."""
        self._live()
        rows = self._dbsync.get(dbsync, {})
        for k in row_keys:
            rows.pop(k, None)

    async def count_dbsync_rows(self, dbsync: str) -> int:
        """How many source rows this dbsync has written."""
        self._live()
        return len(self._dbsync.get(dbsync, {}))

    # coordination --------------------------------------------------------------------------
    async def try_job_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take a named lock for a scheduled job unless another live owner holds it.

        The holder may call again to extend its lease; an expired lock is taken over.
        """
        self._live()
        now = utcnow()
        held = self._locks.get(name)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._locks[name] = (owner, now + timedelta(seconds=ttl_seconds))
        return True

    async def extend_job_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Extend a lock `owner` still holds; False once another took it or it was released."""
        self._live()
        held = self._locks.get(name)
        if held is None or held[0] != owner:
            return False
        self._locks[name] = (owner, utcnow() + timedelta(seconds=ttl_seconds))
        return True

    async def release_job_lock(self, name: str, owner: str) -> None:
        """Release a named job lock held by `owner`."""
        self._live()
        held = self._locks.get(name)
        if held is not None and held[0] == owner:
            del self._locks[name]

    # instances -----------------------------------------------------------------------------
    async def beat(self, instance_id: str, started_at: datetime, view: Mapping[str, Any]) -> None:
        """Record that an instance is alive now, with its view of the shared state."""
        self._live()
        self._instances[instance_id] = InstanceBeat(
            instance_id, started_at, utcnow(), json.loads(json.dumps(dict(view)))
        )

    async def instances(self) -> list[InstanceBeat]:
        """Every instance that beat and was not forgotten, most recently seen first."""
        self._live()
        return sorted(self._instances.values(), key=lambda b: (-b.seen_at.timestamp(), b.id))

    async def forget_instances(self, seen_before: datetime) -> int:
        """Drop instances last seen before a moment (long gone); how many."""
        self._live()
        doomed = [k for k, b in self._instances.items() if b.seen_at < seen_before]
        for k in doomed:
            del self._instances[k]
        return len(doomed)

    # page sessions -------------------------------------------------------------------------
    async def start_session(self, session_hash: str, expires_at: datetime) -> None:
        """Record a new session (and drop the ones already expired)."""
        self._live()
        now = utcnow()
        for k in [k for k, end in self._sessions.items() if end < now]:
            del self._sessions[k]
        self._sessions[session_hash] = expires_at

    async def session_valid(self, session_hash: str) -> bool:
        """True while the session is stored and not expired."""
        self._live()
        end = self._sessions.get(session_hash)
        return end is not None and end > utcnow()

    async def end_session(self, session_hash: str) -> bool:
        """End a session (logout); whether it was there."""
        self._live()
        return self._sessions.pop(session_hash, None) is not None
