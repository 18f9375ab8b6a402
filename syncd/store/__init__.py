"""The state store: pick the backend the daemon settings name."""

from __future__ import annotations

from syncd.config import DaemonSettings
from syncd.errors import StoreError
from syncd.store.protocols import StateStore

SQLITE_FILENAME = "syncd.sqlite3"


def create_store(settings: DaemonSettings) -> StateStore:
    """A closed store for `settings.store`: SQLite in ``state_dir`` or MySQL at ``mysql_dsn``."""
    if settings.store == "mysql":
        from syncd.store.mysql import MysqlStore

        if settings.mysql_dsn is None:
            raise StoreError("daemon.mysql_dsn is required when daemon.store = 'mysql'")
        return MysqlStore(settings.mysql_dsn.get_secret_value())
    from syncd.store.sqlite import SqliteStore

    return SqliteStore(settings.state_dir / SQLITE_FILENAME)


__all__ = ["SQLITE_FILENAME", "StateStore", "create_store"]
