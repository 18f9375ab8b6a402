"""The versioned schema of the state store, rendered for SQLite and MySQL/MariaDB.

Tables are described once (column kinds, keys, indexes) and rendered per dialect, so the two
backends cannot drift apart. The forward-only migrations that create and change them are
``migrations.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

DialectName = Literal["sqlite", "mysql"]

# kind -> (sqlite type, mysql type)
_TYPES: dict[str, tuple[str, str]] = {
    "int": ("INTEGER", "INT"),
    "bigint": ("INTEGER", "BIGINT"),
    "text": ("TEXT", "TEXT"),
    "json": ("TEXT", "LONGTEXT"),
    "ts": ("TEXT", "DATETIME(6)"),  # SQLite: fixed-width ISO text, sortable as a string
}


@dataclass(frozen=True)
class Column:
    """One column: a kind (``str:N``, ``int``, ``bigint``, ``text``, ``json``, ``ts``)."""

    name: str
    kind: str
    null: bool = True
    default: str | None = None

    def render(self, dialect: DialectName) -> str:
        """The column definition for `dialect`."""
        if self.kind.startswith("str:"):
            sql_type = "TEXT" if dialect == "sqlite" else f"VARCHAR({self.kind[4:]})"
        else:
            lite, my = _TYPES[self.kind]
            sql_type = lite if dialect == "sqlite" else my
        out = f"{self.name} {sql_type}"
        if not self.null:
            out += " NOT NULL"
        if self.default is not None:
            out += f" DEFAULT {self.default}"
        return out


@dataclass(frozen=True)
class Table:
    """A table with an optional surrogate ``id`` key, unique keys and plain indexes."""

    name: str
    columns: Sequence[Column]
    surrogate_id: bool = True
    primary_key: Sequence[str] = ()
    unique: Sequence[tuple[str, Sequence[str]]] = ()
    indexes: Sequence[tuple[str, Sequence[str]]] = field(default_factory=tuple)

    def render(self, dialect: DialectName) -> list[str]:
        """CREATE TABLE (and, on SQLite, CREATE INDEX) statements, all idempotent."""
        parts: list[str] = []
        if self.surrogate_id:
            parts.append(
                "id INTEGER PRIMARY KEY AUTOINCREMENT"
                if dialect == "sqlite"
                else "id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"
            )
        parts.extend(c.render(dialect) for c in self.columns)
        if self.primary_key:
            parts.append(f"PRIMARY KEY ({', '.join(self.primary_key)})")
        if dialect == "mysql":
            # Inline keys keep CREATE TABLE IF NOT EXISTS the only statement: re-runnable.
            parts.extend(f"UNIQUE KEY {n} ({', '.join(cols)})" for n, cols in self.unique)
            parts.extend(f"KEY {n} ({', '.join(cols)})" for n, cols in self.indexes)
            body = ",\n  ".join(parts)
            return [
                f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {body}\n)"
                " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
            ]
        body = ",\n  ".join(parts)
        stmts = [f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {body}\n)"]
        stmts += [
            f"CREATE UNIQUE INDEX IF NOT EXISTS {n} ON {self.name} ({', '.join(cols)})"
            for n, cols in self.unique
        ]
        stmts += [
            f"CREATE INDEX IF NOT EXISTS {n} ON {self.name} ({', '.join(cols)})"
            for n, cols in self.indexes
        ]
        return stmts


def _c(name: str, kind: str, null: bool = True, default: str | None = None) -> Column:
    return Column(name, kind, null, default)


SCHEMA_VERSION_TABLE = Table(
    "schema_version",
    [_c("version", "int", null=False), _c("description", "str:200"), _c("applied_at", "ts")],
    surrogate_id=False,
    primary_key=("version",),
)

V1_TABLES = [
    Table(
        "record_links",
        [
            _c("object", "str:16", null=False),
            _c("hub_id", "str:64"),
            _c("crm_id", "str:64"),
            _c("email", "str:320"),  # lower-cased
            _c("name", "str:255"),
            _c("sync_tags", "text", null=False),  # JSON list
            _c("status", "str:32", null=False),
            _c("content_hash", "str:128"),
            _c("deleted_side", "str:8"),
            _c("last_synced_at", "ts"),
            _c("created_at", "ts", null=False),
            _c("updated_at", "ts", null=False),
        ],
        unique=[("ux_links_hub", ("object", "hub_id")), ("ux_links_crm", ("object", "crm_id"))],
        indexes=[
            ("ix_links_email", ("object", "email")),
            ("ix_links_status", ("object", "status")),
            ("ix_links_synced", ("last_synced_at",)),
        ],
    ),
    Table(
        "queue_entries",
        [
            _c("direction", "str:16", null=False),
            _c("object", "str:16", null=False),
            _c("record_key", "str:255", null=False),
            _c("source", "str:64", null=False),
            _c("event", "str:32", null=False),
            _c("email", "str:320"),
            _c("name", "str:255"),
            _c("payload", "json", null=False),
            _c("changed_fields", "json", null=False),
            _c("status", "str:16", null=False),
            _c("attempts", "int", null=False, default="0"),
            _c("next_attempt_at", "ts"),
            _c("lease_owner", "str:128"),
            _c("lease_expires_at", "ts"),
            _c("error_category", "str:32"),
            _c("error_code", "str:128"),
            _c("error_message", "text"),
            _c("transferred", "json"),
            _c("skipped", "json"),
            _c("run_id", "bigint"),
            _c("created_at", "ts", null=False),
            _c("updated_at", "ts", null=False),
            # direction:object:record_key while pending, else NULL: one pending entry/record.
            _c("pending_key", "str:300"),
        ],
        unique=[("ux_queue_pending", ("pending_key",))],
        indexes=[
            ("ix_queue_claim", ("status", "direction", "next_attempt_at", "id")),
            ("ix_queue_status", ("status", "id")),
            ("ix_queue_direction", ("direction", "id")),
            ("ix_queue_lease", ("status", "lease_expires_at")),
            ("ix_queue_record", ("direction", "record_key")),
            ("ix_queue_run", ("run_id",)),
        ],
    ),
    Table(
        "queue_deletions",
        [
            _c("entry_id", "bigint", null=False),
            _c("direction", "str:16", null=False),
            _c("object", "str:16", null=False),
            _c("record_key", "str:255", null=False),
            _c("status", "str:16", null=False),
            _c("payload", "json", null=False),
            _c("changed_fields", "json", null=False),
            _c("email", "str:320"),
            _c("name", "str:255"),
            _c("reason", "str:255", null=False),
            _c("deleted_at", "ts", null=False),
        ],
        indexes=[("ix_deletions_entry", ("entry_id",))],
    ),
    Table(
        "runs",
        [
            _c("kind", "str:16", null=False),
            _c("run_trigger", "str:16", null=False),
            _c("name", "str:128"),
            _c("status", "str:16", null=False),
            _c("started_at", "ts", null=False),
            _c("finished_at", "ts"),
            _c("counts", "json", null=False),
            _c("error_message", "text"),
            _c("owner", "str:128"),
        ],
        indexes=[("ix_runs_kind", ("kind", "name", "id")), ("ix_runs_status", ("status", "kind"))],
    ),
    Table(
        "run_failures",
        [
            _c("run_id", "bigint", null=False),
            _c("failure_key", "str:255", null=False),
            _c("columns_json", "json", null=False),
            _c("reason", "text", null=False),
            _c("category", "str:32", null=False),
            _c("email", "str:320"),
        ],
        indexes=[("ix_failures_run", ("run_id", "id"))],
    ),
    Table(
        "cursors",
        [
            _c("name", "str:191", null=False),
            _c("cursor_value", "text", null=False),
            _c("updated_at", "ts", null=False),
        ],
        surrogate_id=False,
        primary_key=("name",),
    ),
    Table(
        "integration_errors",
        [
            _c("direction", "str:16", null=False),
            _c("category", "str:32", null=False),
            _c("message", "text", null=False),
            _c("since", "ts", null=False),
            _c("updated_at", "ts", null=False),
        ],
        surrogate_id=False,
        primary_key=("direction", "category"),
    ),
    Table(
        "dbsync_rows",
        [
            _c("dbsync", "str:64", null=False),
            _c("row_key", "str:255", null=False),
            _c("email", "str:320", null=False),
            _c("hub_id", "str:64"),
            _c("content_hash", "str:128", null=False),
            _c("run_id", "bigint", null=False),
        ],
        unique=[("ux_dbsync_rows", ("dbsync", "row_key"))],
        indexes=[("ix_dbsync_run", ("dbsync", "run_id"))],
    ),
    Table(
        "job_locks",
        [
            _c("name", "str:191", null=False),
            _c("owner", "str:191", null=False),
            _c("expires_at", "ts", null=False),
            _c("acquired_at", "ts", null=False),
        ],
        surrogate_id=False,
        primary_key=("name",),
    ),
]


TALLY_REASON_MAX = 255  # exclusion reasons are short sentences
# Rebuilds the maintained counts from the entries: the keys of `tallies.tally_key`, in SQL.
_TALLY_CATEGORY = "CASE WHEN status = 'error' THEN COALESCE(error_category, '') ELSE '' END"
_TALLY_REASON = (
    "CASE WHEN status = 'excluded'"
    f" THEN SUBSTR(COALESCE(error_message, ''), 1, {TALLY_REASON_MAX}) ELSE '' END"
)
RECOUNT_TALLIES_SQL = (
    "INSERT INTO queue_tallies (object, direction, status, category, reason, n)"
    f" SELECT object, direction, status, {_TALLY_CATEGORY}, {_TALLY_REASON}, COUNT(*)"
    f" FROM queue_entries GROUP BY object, direction, status, {_TALLY_CATEGORY}, {_TALLY_REASON}"
)
RECOUNT_LINK_TALLIES_SQL = (
    "INSERT INTO link_tallies (object, status, n)"
    " SELECT object, status, COUNT(*) FROM record_links GROUP BY object, status"
)

# Re-runnable: an interrupted step (MySQL commits DDL on its own) starts the counts afresh.
TALLY_REBUILD = (
    "DELETE FROM queue_tallies",
    RECOUNT_TALLIES_SQL,
    "DELETE FROM link_tallies",
    RECOUNT_LINK_TALLIES_SQL,
)
LINK_TALLY_TABLE = Table(
    "link_tallies",
    [
        _c("object", "str:16", null=False),
        _c("status", "str:32", null=False),
        _c("n", "bigint", null=False),
    ],
    surrogate_id=False,
    primary_key=("object", "status"),
)
TALLY_TABLE = Table(
    "queue_tallies",
    [
        _c("object", "str:16", null=False),
        _c("direction", "str:16", null=False),
        _c("status", "str:16", null=False),
        _c("category", "str:32", null=False),  # error entries only, else ''
        _c("reason", "str:255", null=False),  # excluded entries only, else ''
        _c("n", "bigint", null=False),
    ],
    surrogate_id=False,
    primary_key=("object", "direction", "status", "category", "reason"),
)

INSTANCES_TABLE = Table(
    "instances",
    [
        _c("instance_id", "str:128", null=False),
        _c("started_at", "ts", null=False),
        _c("seen_at", "ts", null=False),
        _c("view", "json", null=False),
    ],
    surrogate_id=False,
    primary_key=("instance_id",),
)

# Signed-in page sessions, by the SHA-256 of their nonce: a session is valid while its row
# is there and not expired, so a logout (the row deleted) holds on every instance.
SESSIONS_TABLE = Table(
    "web_sessions",
    [
        _c("session_hash", "str:64", null=False),
        _c("created_at", "ts", null=False),
        _c("expires_at", "ts", null=False),
    ],
    surrogate_id=False,
    primary_key=("session_hash",),
    indexes=(("ix_web_sessions_expiry", ("expires_at",)),),
)


def schema_version_ddl(dialect: DialectName) -> list[str]:
    """Statements creating the schema_version table (idempotent)."""
    return SCHEMA_VERSION_TABLE.render(dialect)
