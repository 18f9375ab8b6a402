"""Several `syncd run` instances on one MariaDB store: started, restarted, frozen, queried.

Each start gets a fresh instance id (``inst-<name>-<n>``), as a restarted process would
under systemd with the default id; the store is read directly with a fresh connection.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tests.e2e.daemon import DaemonProcess, free_port
from tests.e2e.env import Env
from tests.faults.conftest import mysql_admin


def ts(value: Any) -> float:
    """A store timestamp (naive UTC from MariaDB, or ISO text) as Unix time."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


class Cluster:
    """Named instances sharing one store database and one pair of simulators."""

    def __init__(
        self,
        env: Env,
        db: str,
        dsn: str,
        lease: float,
        config: str,
        names: Sequence[str] = ("a", "b"),
    ) -> None:
        self.env, self.db, self.dsn, self.lease, self.config = env, db, dsn, lease, config
        self.ports = {n: free_port() for n in names}
        self.gen = 0
        self.live: dict[str, DaemonProcess] = {}
        self.owner: dict[str, str] = {}
        self.killed_at: dict[str, float] = {}

    def start(self, name: str, *, wait: bool = True) -> DaemonProcess:
        """Start (or restart) instance `name` with a new instance id."""
        self.gen += 1
        owner = f"inst-{name}-{self.gen}"
        daemon_extra = f'store = "mysql"\nmysql_dsn = "{self.dsn}"\nlease_seconds = {self.lease}'
        env = {"SYNCD_DAEMON__LOG_LEVEL": "debug", "SYNCD_DAEMON__INSTANCE_ID": owner}
        d = self.env.start(
            self.config, name=name, daemon_extra=daemon_extra, port=self.ports[name], env=env
        )
        self.live[name], self.owner[name] = d, owner
        return d

    def kill(self, name: str) -> None:
        """SIGKILL an instance (its claims and runs stay behind in the store)."""
        self.live[name].kill()
        self.killed_at[self.owner[name]] = time.time()

    def freeze(self, name: str) -> None:
        """SIGSTOP: the process holds whatever it held, does nothing, renews nothing."""
        self.live[name].signal(signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        """SIGCONT: it carries on where it stopped, unaware of the time that passed."""
        self.live[name].signal(signal.SIGCONT)

    def port_order(self, attempt: int) -> list[int]:
        """Round-robin over the instances; a retry goes to the next one (a load balancer)."""
        names = sorted(self.ports)
        k = attempt % len(names)
        return [self.ports[n] for n in names[k:] + names[:k]]

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of one query on the shared store database (a fresh connection)."""
        conn = mysql_admin()
        try:
            conn.select_db(self.db)
            with conn.cursor() as cur:
                cur.execute(query, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def processing_of(self, owner: str) -> tuple[int, float | None]:
        """How many entries the claims of instance `owner` hold in processing, and when the
        latest lease ends (each claim's token is the instance id and a claim number)."""
        rows = self.sql(
            "SELECT COUNT(*), MAX(lease_expires_at) FROM queue_entries"
            " WHERE status = 'processing' AND lease_owner LIKE %s",
            owner + "#%",
        )
        n, latest = rows[0]
        return int(n), ts(latest) if latest is not None else None
