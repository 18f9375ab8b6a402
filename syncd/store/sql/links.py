"""Record links in SQL: upserts (one at a time or a batch with its entries), lookups, paging."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from syncd.model import EntryStatus, ObjectType
from syncd.store.sql.dialect import (
    LIKE_ESCAPE,
    Dialect,
    Tx,
    as_utc,
    chunks,
    dump_json,
    like_pattern,
    load_json,
    marks,
    utcnow,
)
from syncd.store.sql.tallies import LinkKey, TallyDelta, TallyKey, TallyOps, tally_key
from syncd.store.types import (
    LinkFilter,
    RecordLink,
    SettledChange,
    SyncedRecord,
)

LINK_COLS = (
    "id, object, hub_id, crm_id, email, name, sync_tags, status, content_hash, deleted_side,"
    " last_synced_at, created_at, updated_at, base, base_origin, deleted_at"
)
_INSERT_LINK = (
    "INSERT INTO record_links (object, hub_id, crm_id, email, name, sync_tags,"
    " status, content_hash, deleted_side, last_synced_at, created_at, updated_at, base,"
    " deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_SETTLED = (
    "INSERT INTO queue_entries (direction, object, record_key, source, event, email, name,"
    " payload, changed_fields, status, attempts, error_category, error_code, error_message,"
    " transferred, skipped, run_id, created_at, updated_at, data_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)  # placeholders only: lets aiomysql fold executemany into one multi-row INSERT
_FINAL = (EntryStatus.PROCESSED, EntryStatus.ERROR, EntryStatus.EXCLUDED)
_UPDATE_LINK = (
    "UPDATE record_links SET hub_id = COALESCE(?, hub_id),"
    " crm_id = COALESCE(?, crm_id), email = COALESCE(?, email),"
    " name = COALESCE(?, name), sync_tags = ?, status = ?, content_hash = ?,"
    " deleted_side = ?, last_synced_at = COALESCE(?, last_synced_at), updated_at = ?,"
    " base_origin = CASE WHEN ? IS NULL THEN base_origin END, base = COALESCE(?, base),"
    " deleted_at = ? WHERE id = ?"
)


@lru_cache(maxsize=256)
def _tags_json(tags: frozenset[str]) -> str:
    # A batch's links mostly carry the same few tag sets: encode each set once.
    return dump_json(sorted(tags))


def _base_json(base: Mapping[str, Any] | None) -> str | None:
    # None keeps the stored base (see RecordLink.base); an empty base is stored as {}.
    return None if base is None else dump_json(_as_dict(base))


def _as_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    # The encoder takes dicts only; most values already are one (no copy per record).
    return value if type(value) is dict else dict(value)


def _small_json(value: Mapping[str, Any]) -> str:
    return "{}" if not value else dump_json(_as_dict(value))


@lru_cache(maxsize=256)
def _field_list_json(fields: tuple[str, ...]) -> str:
    # A pull's records mostly carry one list of fields: encode it once.
    return dump_json(sorted(fields))


def _settled_row(s: SettledChange, run_id: int | None, now: str) -> tuple[Any, ...]:
    """_INSERT_SETTLED values of a settled change (its entry as `complete`, `fail` or
    `exclude` would have left it)."""
    c = s.change
    error = s.status is EntryStatus.ERROR
    excluded = s.status is EntryStatus.EXCLUDED
    return (
        str(c.direction),
        str(c.object),
        c.record_key,
        c.source,
        c.event,
        c.email,
        c.name,
        dump_json(_as_dict(c.fields)),
        _field_list_json(tuple(c.fields)),
        str(s.status),
        1 if error else 0,
        str(s.error_category) if error and s.error_category else None,
        (s.error_code or "ERROR") if error else ("excluded" if excluded else None),
        s.message if error or excluded else None,
        dump_json(_as_dict(s.transferred)) if s.status is EntryStatus.PROCESSED else None,
        _small_json(s.skipped) if s.status is EntryStatus.PROCESSED else None,
        run_id,
        now,
        now,
        now,
    )


def link_conditions(d: Dialect, filt: LinkFilter) -> tuple[list[str], list[Any]]:
    """WHERE conditions and parameters of a link filter (shared by list and count)."""
    where: list[str] = []
    params: list[Any] = []
    for col, val in (
        ("object", filt.object),
        ("status", filt.status),
        ("deleted_side", filt.deleted_side),
    ):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(str(val))
    if filt.synced_after is not None:
        where.append("last_synced_at >= ?")
        params.append(d.ts(filt.synced_after))
    if filt.synced_before is not None:
        where.append("last_synced_at < ?")
        params.append(d.ts(filt.synced_before))
    if filt.text:
        pattern = like_pattern(filt.text)
        where.append(f"(email LIKE ? {LIKE_ESCAPE} OR LOWER(name) LIKE ? {LIKE_ESCAPE})")
        params += [pattern, pattern]
    return where, params


class LinkOps(TallyOps):
    """The LinkStore protocol in SQL."""

    # record links ------------------------------------------------------------------------
    def _link(self, r: Sequence[Any]) -> RecordLink:
        d = self.dialect
        return RecordLink(
            id=int(r[0]),
            object=ObjectType(r[1]),
            hub_id=r[2],
            crm_id=r[3],
            email=r[4],
            name=r[5],
            sync_tags=frozenset(load_json(r[6], [])),
            status=r[7],
            content_hash=r[8],
            deleted_side=r[9],
            last_synced_at=d.from_ts(r[10]),
            created_at=d.from_ts(r[11]),
            updated_at=d.from_ts(r[12]),
            base=load_json(r[13], None),
            base_origin=r[14],
            deleted_at=d.from_ts(r[15]),
        )

    async def upsert_link(self, link: RecordLink) -> int:
        """Insert or update a link (matched by object + hub_id, or object + crm_id).

        On update, a None id, email, name or last_synced_at keeps the stored value; the other
        fields are overwritten (deleted_side=None clears a deletion mark).
        """
        if link.hub_id is None and link.crm_id is None:
            raise ValueError("a link needs a hub_id or a crm_id")

        async def op(tx: Tx) -> int:
            return await self._upsert_link_tx(tx, link)

        return await self._run(op, conflict_retry=True)

    def _link_values(
        self, link: RecordLink, now: str, ts: Callable[[datetime | None], Any] | None = None
    ) -> tuple[Any, ...]:
        """INSERT values of a link (the column order of _INSERT_LINK); `ts` formats
        timestamps (the dialect's by default)."""
        return (
            str(link.object),
            link.hub_id,
            link.crm_id,
            link.email.lower() if link.email else None,
            link.name,
            _tags_json(link.sync_tags),
            link.status,
            link.content_hash,
            link.deleted_side,
            (ts or self.dialect.ts)(link.last_synced_at),
            now,
            now,
            _base_json(link.base),
            (ts or self.dialect.ts)(link.deleted_at),
        )

    def _link_update(
        self,
        link: RecordLink,
        now: str,
        row_id: int,
        ts: Callable[[datetime | None], Any] | None = None,
    ) -> tuple[Any, ...]:
        """UPDATE parameters of a link (the order of _UPDATE_LINK)."""
        return (
            link.hub_id,
            link.crm_id,
            link.email.lower() if link.email else None,
            link.name,
            _tags_json(link.sync_tags),
            link.status,
            link.content_hash,
            link.deleted_side,
            (ts or self.dialect.ts)(link.last_synced_at),
            now,
            _base_json(link.base),
            _base_json(link.base),
            (ts or self.dialect.ts)(link.deleted_at),
            row_id,
        )

    async def _upsert_link_tx(self, tx: Tx, link: RecordLink) -> int:
        d = self.dialect
        now = d.ts(utcnow())
        row = None
        for col, val in (("hub_id", link.hub_id), ("crm_id", link.crm_id)):
            if val is not None and row is None:
                row = await self._fetchone(
                    tx,
                    f"SELECT id, status FROM record_links WHERE object = ? AND {col} = ?"
                    f"{d.for_update}",
                    (str(link.object), val),
                )
        delta = TallyDelta[LinkKey]()
        obj = str(link.object)
        if row is None:
            row_id = await tx.insert(_INSERT_LINK, self._link_values(link, now))
            delta.add((obj, link.status))
        else:
            row_id = int(row[0])
            await tx.execute(_UPDATE_LINK, self._link_update(link, now, row_id))
            delta.move((obj, str(row[1])), (obj, link.status))
        await self._apply_link_tallies(tx, delta)
        return row_id

    async def get_links(self, obj: ObjectType, crm_ids: Sequence[str]) -> dict[str, RecordLink]:
        """The links of these CRM ids, keyed by CRM id (one query per chunk, not per id)."""
        wanted = sorted(set(crm_ids))

        async def op(tx: Tx) -> dict[str, RecordLink]:
            out: dict[str, RecordLink] = {}
            for part in chunks(wanted):
                rows = await tx.fetchall(
                    f"SELECT {LINK_COLS} FROM record_links WHERE object = ?"
                    f" AND crm_id IN ({marks(len(part))})",
                    (str(obj), *part),
                )
                for r in rows:
                    out[r[3]] = self._link(r)
            return out

        return await self._run(op, write=False) if wanted else {}

    async def link_and_complete(
        self, records: Sequence[SyncedRecord], *, owner: str, run_id: int | None = None
    ) -> int:
        """Upsert each record's link (as `upsert_link`) and complete its entry (as `complete`),
        all in one transaction; how many entries were completed. Records whose lease `owner`
        no longer holds change nothing, their links included: a claimer that lost them must
        not put its older link and base over the new claimer's."""
        for r in records:
            if r.link is not None and r.link.hub_id is None and r.link.crm_id is None:
                raise ValueError("a link needs a hub_id or a crm_id")
        if not records:
            return 0

        async def op(tx: Tx) -> int:
            held = await self._held_tallies(tx, [r.entry_id for r in records], owner)
            await self._upsert_links_tx(
                tx, [r.link for r in records if r.link is not None and r.entry_id in held]
            )
            now = self.dialect.ts(utcnow())
            await self._moved(tx, held, "processed")
            return await tx.executemany(
                "UPDATE queue_entries SET status = 'processed', transferred = ?, skipped = ?,"
                " run_id = COALESCE(?, run_id), lease_expires_at = NULL, next_attempt_at = NULL,"
                " error_category = NULL, error_code = NULL, error_message = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'processing' AND lease_owner = ?",
                [
                    (
                        dump_json(dict(r.transferred)),
                        _small_json(r.skipped),
                        run_id,
                        now,
                        r.entry_id,
                        owner,
                    )
                    for r in records
                ],
            )

        return await self._run(op, conflict_retry=True)

    async def record_settled(
        self, settled: Sequence[SettledChange], *, run_id: int | None = None
    ) -> int:
        """Upsert the links of `settled` (as `upsert_link`) and insert each change's entry in
        its final status, all in one transaction; how many entries were inserted.

        Only for records with no entry pending or processing (the caller makes sure).
        """
        for s in settled:
            if s.status not in _FINAL:
                raise ValueError(f"a settled entry is processed, error or excluded: {s.status}")
            if s.status is EntryStatus.ERROR and s.error_category is None:
                raise ValueError("a settled error needs its category")
            if s.link is not None and s.link.hub_id is None and s.link.crm_id is None:
                raise ValueError("a link needs a hub_id or a crm_id")
        if not settled:
            return 0
        links = [s.link for s in settled if s.link is not None]

        async def op(tx: Tx) -> int:
            await self._upsert_links_tx(tx, links)
            now = self.dialect.ts(utcnow())
            rows = [_settled_row(s, run_id, now) for s in settled]
            await tx.executemany(_INSERT_SETTLED, rows)
            # Every inserted entry counts in its tally row, as `enqueue` + a move would.
            delta = TallyDelta[TallyKey]()
            for (obj, direction, status, cat, msg), n in Counter(
                (r[1], r[0], r[9], r[11], r[13]) for r in rows
            ).items():
                delta.add(tally_key(obj, direction, status, cat, msg), n)
            await self._apply_tallies(tx, delta)
            return len(rows)

        return await self._run(op, conflict_retry=True)

    async def _upsert_links_tx(self, tx: Tx, links: Sequence[RecordLink]) -> None:
        """Many upserts with a few set-wise statements; one by one when keys repeat."""
        hub_keys = [(lk.object, lk.hub_id) for lk in links if lk.hub_id is not None]
        crm_keys = [(lk.object, lk.crm_id) for lk in links if lk.crm_id is not None]
        if len(set(hub_keys)) < len(hub_keys) or len(set(crm_keys)) < len(crm_keys):
            # A later link of the batch may match an earlier one: keep upsert_link's order.
            for link in links:
                await self._upsert_link_tx(tx, link)
            return
        d = self.dialect
        found: dict[tuple[str, str, str], int] = {}  # (column, object, value) -> id
        status_of: dict[int, str] = {}  # id -> status, as the batch's updates leave it
        for col, keys in (("hub_id", hub_keys), ("crm_id", crm_keys)):
            by_obj: dict[ObjectType, list[str]] = {}
            for o, v in keys:
                by_obj.setdefault(o, []).append(str(v))
            for o, values in by_obj.items():
                for part in chunks(sorted(values)):
                    rows = await tx.fetchall(
                        f"SELECT id, {col}, status FROM record_links WHERE object = ?"
                        f" AND {col} IN ({marks(len(part))}) ORDER BY id{d.for_update}",
                        (str(o), *part),
                    )
                    found.update({(col, str(o), r[1]): int(r[0]) for r in rows})
                    status_of.update({int(r[0]): str(r[2]) for r in rows})
        now = d.ts(utcnow())
        # A batch's links mostly share one last_synced_at: format each value once.
        ts = lru_cache(maxsize=8)(d.ts)
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        delta = TallyDelta[LinkKey]()
        for link in links:
            row_id = None
            if link.hub_id is not None:
                row_id = found.get(("hub_id", str(link.object), link.hub_id))
            if row_id is None and link.crm_id is not None:
                row_id = found.get(("crm_id", str(link.object), link.crm_id))
            obj = str(link.object)
            if row_id is None:
                inserts.append(self._link_values(link, now, ts))
                delta.add((obj, link.status))
            else:
                updates.append(self._link_update(link, now, row_id, ts))
                delta.move((obj, status_of[row_id]), (obj, link.status))
                status_of[row_id] = link.status
        if updates:
            await tx.executemany(_UPDATE_LINK, updates)
        if inserts:
            await tx.executemany(_INSERT_LINK, inserts)
        await self._apply_link_tallies(tx, delta)

    async def get_link(
        self,
        obj: ObjectType,
        *,
        hub_id: str | None = None,
        crm_id: str | None = None,
        email: str | None = None,
    ) -> RecordLink | None:
        """Find a link by hub id, else CRM id, else (case-insensitive) email."""
        probes = [
            (col, val)
            for col, val in (
                ("hub_id", hub_id),
                ("crm_id", crm_id),
                ("email", email.lower() if email else None),
            )
            if val is not None
        ]

        async def op(tx: Tx) -> RecordLink | None:
            for col, val in probes:
                row = await self._fetchone(
                    tx,
                    f"SELECT {LINK_COLS} FROM record_links WHERE object = ? AND {col} = ?"
                    " ORDER BY id DESC LIMIT 1",
                    (str(obj), val),
                )
                if row is not None:
                    return self._link(row)
            return None

        return await self._run(op, write=False)

    async def mark_deleted(
        self, obj: ObjectType, side: str, ids: Sequence[str], *, at: datetime
    ) -> list[RecordLink]:
        """Mark links deleted on one side (see the protocol)."""
        if side not in ("hub", "crm"):
            raise ValueError(f"side must be hub or crm, not {side!r}")
        col = f"{side}_id"
        wanted = sorted(set(ids))

        async def op(tx: Tx) -> list[RecordLink]:
            d = self.dialect
            marked: list[RecordLink] = []
            for part in chunks(wanted):
                rows = await tx.fetchall(
                    f"SELECT {LINK_COLS} FROM record_links WHERE object = ?"
                    f" AND {col} IN ({marks(len(part))}) AND deleted_side IS NULL"
                    f" ORDER BY id{d.for_update}",
                    (str(obj), *part),
                )
                if not rows:
                    continue
                now = d.ts(utcnow())
                await tx.executemany(
                    "UPDATE record_links SET deleted_side = ?, deleted_at = ?, updated_at = ?"
                    " WHERE id = ?",
                    [(side, d.ts(at), now, int(r[0])) for r in rows],
                )
                marked += [
                    replace(self._link(r), deleted_side=side, deleted_at=as_utc(at)) for r in rows
                ]
            return marked

        return await self._run(op, conflict_retry=True) if wanted else []

    async def list_links(
        self, filt: LinkFilter, *, after_id: int | None = None, limit: int = 1000
    ) -> list[RecordLink]:
        """Links matching `filt` in id order, with id > after_id (streamable)."""
        where, params = link_conditions(self.dialect, filt)
        if after_id is not None:
            where.append("id > ?")
            params.append(after_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        async def op(tx: Tx) -> list[RecordLink]:
            rows = await tx.fetchall(
                f"SELECT {LINK_COLS} FROM record_links{clause} ORDER BY id LIMIT ?",
                (*params, max(limit, 0)),
            )
            return [self._link(r) for r in rows]

        return await self._run(op, write=False)
