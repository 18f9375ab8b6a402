"""The versioned schema of the state store, rendered for SQLite and MySQL/MariaDB.

Tables are described once (column kinds, keys, indexes) and rendered per dialect, so the two
backends cannot drift apart. Migrations are forward-only steps; each step's statements are
idempotent (``IF NOT EXISTS``) because MySQL commits DDL implicitly and a step interrupted
half-way must be safe to run again.
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

_V1_TABLES = [
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
_LINK_TALLY_TABLE = Table(
    "link_tallies",
    [
        _c("object", "str:16", null=False),
        _c("status", "str:32", null=False),
        _c("n", "bigint", null=False),
    ],
    surrogate_id=False,
    primary_key=("object", "status"),
)
_TALLY_TABLE = Table(
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

# The shape migration 6 gives queue_tallies (created under this name, then renamed on SQLite).
_TALLY_TABLE_V6 = Table(
    "queue_tallies_v6",
    [
        *_TALLY_TABLE.columns[:5],
        _c("shard", "int", null=False, default="0"),
        _TALLY_TABLE.columns[5],
    ],
    surrogate_id=False,
    primary_key=("object", "direction", "status", "category", "reason", "shard"),
)


@dataclass(frozen=True)
class Migration:
    """One forward schema step: its version, a description and per-dialect statements."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    mysql: tuple[str, ...]

    def statements(self, dialect: DialectName) -> tuple[str, ...]:
        """The statements of this step for `dialect`."""
        return self.sqlite if dialect == "sqlite" else self.mysql


def _tables(tables: Sequence[Table], dialect: DialectName) -> tuple[str, ...]:
    return tuple(stmt for t in tables for stmt in t.render(dialect))


_INSTANCES_TABLE = Table(
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
_SESSIONS_TABLE = Table(
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


# The newest processed entry that wrote a linked record, in either direction (the queue's
# (direction, record_key) index finds each); re-runnable, it only fills empty bases.
_LAST_SENT = (
    "SELECT MAX(q.id) FROM queue_entries q WHERE q.status = 'processed'"
    " AND q.object = record_links.object AND q.transferred IS NOT NULL AND ("
    "(q.direction = 'inbound' AND q.record_key = record_links.hub_id)"
    " OR (q.direction = 'outbound' AND q.record_key = record_links.crm_id))"
)
_SEED_BASES = (
    "UPDATE record_links SET"
    f" base_origin = (SELECT e.direction FROM queue_entries e WHERE e.id = ({_LAST_SENT})),"
    f" base = (SELECT e.transferred FROM queue_entries e WHERE e.id = ({_LAST_SENT}))"
    " WHERE base IS NULL",
)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        sqlite=_tables(_V1_TABLES, "sqlite"),
        mysql=_tables(_V1_TABLES, "mysql"),
    ),
    Migration(
        2,
        "covering index for the health breakdown",
        # The overview's per-object counts read this index alone instead of every row.
        sqlite=(
            "CREATE INDEX IF NOT EXISTS ix_queue_health"
            " ON queue_entries (object, direction, status, error_category)",
        ),
        mysql=(
            "CREATE INDEX IF NOT EXISTS ix_queue_health"
            " ON queue_entries (object, direction, status, error_category)",
        ),
    ),
    Migration(
        3,
        "when an entry's field values last arrived",
        # Merging entries of one record must let the newest values win; ids do not say which
        # are newest once a change has coalesced into an older pending entry.
        sqlite=("ALTER TABLE queue_entries ADD COLUMN data_at TEXT",),
        mysql=("ALTER TABLE queue_entries ADD COLUMN IF NOT EXISTS data_at DATETIME(6) NULL",),
    ),
    Migration(
        4,
        "maintained queue and link counts",
        # Status and health read these rows instead of counting every entry and link; the
        # store keeps them in step in the transaction of each change. Rebuilt here from what
        # is already stored.
        sqlite=(
            *_TALLY_TABLE.render("sqlite"),
            *_LINK_TALLY_TABLE.render("sqlite"),
            *TALLY_REBUILD,
        ),
        mysql=(
            *_TALLY_TABLE.render("mysql"),
            *_LINK_TALLY_TABLE.render("mysql"),
            *TALLY_REBUILD,
        ),
    ),
    Migration(
        5,
        "dbsync rows: no index on the run that last saw a row",
        # Every run rewrites run_id of each row it meets, and this index made each of those
        # updates about a third dearer; the one reader (rows not seen by a run, once per
        # delete_missing pass) walks ux_dbsync_rows in key order instead.
        sqlite=("DROP INDEX IF EXISTS ix_dbsync_run",),
        mysql=("DROP INDEX IF EXISTS ix_dbsync_run ON dbsync_rows",),
    ),
    Migration(
        6,
        "queue counts sharded",
        # Concurrent transactions (intake beside a flush, several instances) each add to
        # one shard's rows instead of all waiting for the lock on one row (see tallies.py).
        # SQLite cannot change a primary key in place: the table is copied; both forms
        # are re-runnable.
        sqlite=(
            *_TALLY_TABLE_V6.render("sqlite"),
            "DELETE FROM queue_tallies_v6",
            "INSERT INTO queue_tallies_v6 (object, direction, status, category, reason, n)"
            " SELECT object, direction, status, category, reason, n FROM queue_tallies",
            "DROP TABLE queue_tallies",
            "ALTER TABLE queue_tallies_v6 RENAME TO queue_tallies",
        ),
        mysql=(
            "ALTER TABLE queue_tallies ADD COLUMN IF NOT EXISTS shard INT NOT NULL DEFAULT 0,"
            " DROP PRIMARY KEY,"
            " ADD PRIMARY KEY (object, direction, status, category, reason, shard)",
        ),
    ),
    Migration(
        7,
        "fewer queue indexes for each webhook to write",
        # Every intake commit writes each queue index; on SQLite they were most of its cost.
        # The health breakdown reads the tallies (v4), so its index only slowed writes; an
        # entry has a lease and a run only once a flush took it, so on SQLite (which has
        # partial indexes) those two indexes leave the rows the webhooks add alone.
        sqlite=(
            "DROP INDEX IF EXISTS ix_queue_health",
            "DROP INDEX IF EXISTS ix_queue_lease",
            "CREATE INDEX ix_queue_lease ON queue_entries (status, lease_expires_at)"
            " WHERE lease_expires_at IS NOT NULL",
            "DROP INDEX IF EXISTS ix_queue_run",
            "CREATE INDEX ix_queue_run ON queue_entries (run_id) WHERE run_id IS NOT NULL",
        ),
        mysql=("DROP INDEX IF EXISTS ix_queue_health ON queue_entries",),
    ),
    Migration(
        8,
        "a base per linked record: the values both sides last agreed on",
        # The merge compares each side with the base. Links made before it existed start
        # from the values last sent for the record, in that entry's own field names; the
        # sync layer reads them through the mapping (base_origin says which names) and
        # the first sync rewrites them.
        sqlite=(
            "ALTER TABLE record_links ADD COLUMN base TEXT",
            "ALTER TABLE record_links ADD COLUMN base_origin TEXT",
            *_SEED_BASES,
        ),
        mysql=(
            "ALTER TABLE record_links ADD COLUMN IF NOT EXISTS base LONGTEXT NULL,"
            " ADD COLUMN IF NOT EXISTS base_origin VARCHAR(16) NULL",
            *_SEED_BASES,
        ),
    ),
    Migration(
        9,
        "when a linked record's deletion was seen",
        sqlite=("ALTER TABLE record_links ADD COLUMN deleted_at TEXT",),
        mysql=("ALTER TABLE record_links ADD COLUMN IF NOT EXISTS deleted_at DATETIME(6) NULL",),
    ),
    Migration(
        10,
        "instances sharing the store: heartbeats and their view of the shared state",
        sqlite=tuple(_INSTANCES_TABLE.render("sqlite")),
        mysql=tuple(_INSTANCES_TABLE.render("mysql")),
    ),
    Migration(
        11,
        "health counts records: an index of the failing and excluded entries",
        # Health counts distinct records with error or excluded entries (the tallies count
        # entries). On SQLite a partial index holding every column that count reads keeps
        # it off the table rows (a third of the time at a million entries), and the
        # webhooks' pending rows never enter it. MariaDB has no partial indexes: a full one
        # would cost every intake write, so there the count reads through ix_queue_status.
        sqlite=(
            "CREATE INDEX IF NOT EXISTS ix_queue_bad ON queue_entries"
            " (status, object, direction, error_category, error_message, record_key)"
            " WHERE status IN ('error', 'excluded')",
        ),
        mysql=(),
    ),
    Migration(
        12,
        "page sessions in the store, so a logout on one instance holds on all",
        sqlite=tuple(_SESSIONS_TABLE.render("sqlite")),
        mysql=tuple(_SESSIONS_TABLE.render("mysql")),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def schema_version_ddl(dialect: DialectName) -> list[str]:
    """Statements creating the schema_version table (idempotent)."""
    return SCHEMA_VERSION_TABLE.render(dialect)


def pending_migrations(current: int) -> list[Migration]:
    """The steps still to apply on a database at version `current`, in order."""
    return [m for m in MIGRATIONS if m.version > current]
