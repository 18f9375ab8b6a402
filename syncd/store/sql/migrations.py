"""The forward steps of the state store's schema, one per version, for SQLite and MySQL.

Each step's statements are idempotent (``IF NOT EXISTS``) because MySQL commits DDL
implicitly and a step interrupted half-way must be safe to run again. The tables they create
are described in ``schema.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from syncd.store.sql.schema import (
    INSTANCES_TABLE,
    LINK_TALLY_TABLE,
    SESSIONS_TABLE,
    TALLY_REBUILD,
    TALLY_TABLE,
    V1_TABLES,
    Column,
    DialectName,
    Table,
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


# The shape migration 6 gives queue_tallies (created under this name, then renamed on SQLite).
_TALLY_TABLE_V6 = Table(
    "queue_tallies_v6",
    [
        *TALLY_TABLE.columns[:5],
        Column("shard", "int", null=False, default="0"),
        TALLY_TABLE.columns[5],
    ],
    surrogate_id=False,
    primary_key=("object", "direction", "status", "category", "reason", "shard"),
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
        sqlite=_tables(V1_TABLES, "sqlite"),
        mysql=_tables(V1_TABLES, "mysql"),
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
            *TALLY_TABLE.render("sqlite"),
            *LINK_TALLY_TABLE.render("sqlite"),
            *TALLY_REBUILD,
        ),
        mysql=(
            *TALLY_TABLE.render("mysql"),
            *LINK_TALLY_TABLE.render("mysql"),
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
        sqlite=tuple(INSTANCES_TABLE.render("sqlite")),
        mysql=tuple(INSTANCES_TABLE.render("mysql")),
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
        sqlite=tuple(SESSIONS_TABLE.render("sqlite")),
        mysql=tuple(SESSIONS_TABLE.render("mysql")),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def pending_migrations(current: int) -> list[Migration]:
    """The steps still to apply on a database at version `current`, in order."""
    return [m for m in MIGRATIONS if m.version > current]
