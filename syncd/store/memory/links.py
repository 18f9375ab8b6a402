"""Record links of the memory store, and the two calls that write links and entries together
(`link_and_complete`, `record_settled`), with the rules of ``syncd/store/records.py``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from syncd.errors import StoreError
from syncd.model import Direction, EntryStatus, ErrorCategory, ObjectType
from syncd.store.memory.queue_admin import QueueAdminOps
from syncd.store.memory.state import Entry
from syncd.store.sql.dialect import as_utc, dump_json, load_json, utcnow
from syncd.store.types import LinkFilter, RecordLink, SettledChange, SyncedRecord

T = TypeVar("T")
_FINAL = (EntryStatus.PROCESSED, EntryStatus.ERROR, EntryStatus.EXCLUDED)

# What each link touched by a call looked like before it (None: it did not exist), so a
# call that fails half-way leaves the links as they were, as a rolled back transaction does.
_Undo = dict[int, RecordLink | None]


def _keyed(link: RecordLink) -> None:
    if link.hub_id is None and link.crm_id is None:
        raise ValueError("a link needs a hub_id or a crm_id")


def _first(value: T | None, stored: T | None) -> T | None:
    """COALESCE: the given value, else the stored one."""
    return value if value is not None else stored


def _json(value: Mapping[str, Any]) -> str:
    return dump_json(dict(value))


def link_matches(link: RecordLink, filt: LinkFilter) -> bool:
    """Whether a link passes every condition of `filt` (as the SQL stores' WHERE)."""
    for have, want in (
        (link.object, filt.object),
        (link.status, filt.status),
        (link.deleted_side, filt.deleted_side),
    ):
        if want is not None and have != want:
            return False
    synced = link.last_synced_at
    if filt.synced_after is not None and (synced is None or synced < as_utc(filt.synced_after)):
        return False
    if filt.synced_before is not None and (synced is None or synced >= as_utc(filt.synced_before)):
        return False
    if filt.text:
        text = filt.text.lower()
        return any(v is not None and text in v.lower() for v in (link.email, link.name))
    return True


class LinkOps(QueueAdminOps):
    """Links of the StateStore protocol, in memory."""

    async def upsert_link(self, link: RecordLink) -> int:
        """Insert or update a link (matched by object + hub_id, or object + crm_id).

        On update, a None id, email, name or last_synced_at keeps the stored value; the other
        fields are overwritten (deleted_side=None clears a deletion mark).
        """
        self._live()
        _keyed(link)
        return self._upsert_links([link])[0]

    def _upsert_links(self, links: Sequence[RecordLink]) -> list[int]:
        """Upsert links one after the other; all or none (a failure undoes the others)."""
        undo: _Undo = {}
        last_id = self._last_link_id
        now = utcnow()
        try:
            return [self._upsert_one(link, now, undo) for link in links]
        except BaseException:
            # Every touched link out first, then the old ones back: an id one link gave up
            # in this call may have been taken by another.
            for row_id in undo:
                self._unindex_link(self._links[row_id])
            for row_id, before in undo.items():
                if before is None:
                    del self._links[row_id]
                else:
                    self._put_link(before)  # in its old place: the dict's order is id order
            self._last_link_id = last_id  # as SQLite, whose rollback also undoes AUTOINCREMENT
            raise

    def _upsert_one(self, link: RecordLink, now: datetime, undo: _Undo) -> int:
        obj = ObjectType(link.object)
        row_id = None
        if link.hub_id is not None:
            row_id = self._by_hub.get((obj, link.hub_id))
        if row_id is None and link.crm_id is not None:
            row_id = self._by_crm.get((obj, link.crm_id))
        # As it would be inserted; an update keeps what a None here leaves unsaid.
        given = RecordLink(
            obj,
            link.hub_id,
            link.crm_id,
            email=link.email.lower() if link.email else None,
            name=link.name,
            sync_tags=frozenset(link.sync_tags),
            status=link.status,
            content_hash=link.content_hash,
            deleted_side=link.deleted_side,
            last_synced_at=as_utc(link.last_synced_at) if link.last_synced_at is not None else None,
            created_at=now,
            updated_at=now,
            # A copy through JSON, as the SQL stores keep it: the caller's dict is its own.
            base=load_json(dump_json(dict(link.base)), {}) if link.base is not None else None,
            deleted_at=as_utc(link.deleted_at) if link.deleted_at is not None else None,
        )
        if row_id is None:
            self._last_link_id = row_id = self._last_link_id + 1
            new = replace(given, id=row_id)
            undo.setdefault(row_id, None)
        else:
            old = self._links[row_id]
            new = replace(
                given,
                hub_id=_first(given.hub_id, old.hub_id),
                crm_id=_first(given.crm_id, old.crm_id),
                email=_first(given.email, old.email),
                name=_first(given.name, old.name),
                last_synced_at=_first(given.last_synced_at, old.last_synced_at),
                created_at=old.created_at,
                id=row_id,
                # A new base replaces the stored one and its seeded origin; None keeps both.
                base=_first(given.base, old.base),
                base_origin=None if given.base is not None else old.base_origin,
            )
            # Matched by hub id, the link may take a CRM id another link holds: the SQL
            # stores' unique key refuses that, and so does this store.
            for index, value in ((self._by_hub, new.hub_id), (self._by_crm, new.crm_id)):
                holder = index.get((obj, value)) if value is not None else None
                if holder is not None and holder != row_id:
                    raise StoreError(
                        f"memory store: link {row_id} cannot take {value!r} of link {holder}"
                    )
            undo.setdefault(row_id, old)
            self._unindex_link(old)
        self._put_link(new)
        return row_id

    def _put_link(self, link: RecordLink) -> None:
        assert link.id is not None
        self._links[link.id] = link
        if link.hub_id is not None:
            self._by_hub[(link.object, link.hub_id)] = link.id
        if link.crm_id is not None:
            self._by_crm[(link.object, link.crm_id)] = link.id
        if link.email is not None:
            self._by_email.setdefault((link.object, link.email), set()).add(link.id)

    def _unindex_link(self, link: RecordLink) -> None:
        assert link.id is not None
        if link.hub_id is not None:
            del self._by_hub[(link.object, link.hub_id)]
        if link.crm_id is not None:
            del self._by_crm[(link.object, link.crm_id)]
        if link.email is not None:
            ids = self._by_email[(link.object, link.email)]
            ids.discard(link.id)
            if not ids:
                del self._by_email[(link.object, link.email)]

    async def get_link(
        self,
        obj: ObjectType,
        *,
        hub_id: str | None = None,
        crm_id: str | None = None,
        email: str | None = None,
    ) -> RecordLink | None:
        """Find a link by hub id, else CRM id, else (case-insensitive) email."""
        self._live()
        o = ObjectType(obj)
        if hub_id is not None and (o, hub_id) in self._by_hub:
            return self._links[self._by_hub[(o, hub_id)]]
        if crm_id is not None and (o, crm_id) in self._by_crm:
            return self._links[self._by_crm[(o, crm_id)]]
        if email and (o, email.lower()) in self._by_email:
            return self._links[max(self._by_email[(o, email.lower())])]  # the newest
        return None

    async def get_links(self, obj: ObjectType, crm_ids: Sequence[str]) -> dict[str, RecordLink]:
        """The links of these CRM ids, keyed by CRM id."""
        self._live()
        o = ObjectType(obj)
        found = ((c, self._by_crm.get((o, c))) for c in sorted(set(crm_ids)))
        return {c: self._links[i] for c, i in found if i is not None}

    async def mark_deleted(
        self, obj: ObjectType, side: str, ids: Sequence[str], *, at: datetime
    ) -> list[RecordLink]:
        """Mark links deleted on one side (see the protocol)."""
        self._live()
        if side not in ("hub", "crm"):
            raise ValueError(f"side must be hub or crm, not {side!r}")
        index = self._by_hub if side == "hub" else self._by_crm
        o = ObjectType(obj)
        now = utcnow()
        marked: list[RecordLink] = []
        for key in sorted(set(ids)):
            row_id = index.get((o, key))
            if row_id is None or self._links[row_id].deleted_side is not None:
                continue
            link = replace(self._links[row_id], deleted_side=side, deleted_at=as_utc(at))
            self._links[row_id] = replace(link, updated_at=now)
            marked.append(self._links[row_id])
        return marked

    async def list_links(
        self, filt: LinkFilter, *, after_id: int | None = None, limit: int = 1000
    ) -> list[RecordLink]:
        """Links matching `filt` in id order, with id > after_id (streamable)."""
        self._live()
        out: list[RecordLink] = []
        if limit <= 0:
            return out
        for row_id, link in self._links.items():
            if (after_id is None or row_id > after_id) and link_matches(link, filt):
                out.append(link)
                if len(out) >= limit:
                    break
        return out

    async def count_links(self, filt: LinkFilter) -> int:
        """How many links match `filt`."""
        self._live()
        return sum(1 for link in self._links.values() if link_matches(link, filt))

    async def link_counts(self) -> dict[tuple[ObjectType, str], int]:
        """Links by object and status (counted when asked: see `queue_tallies`)."""
        self._live()
        return dict(Counter((link.object, link.status) for link in self._links.values()))

    # links and entries together --------------------------------------------------------------
    async def link_and_complete(
        self, records: Sequence[SyncedRecord], *, owner: str, run_id: int | None = None
    ) -> int:
        """Upsert each record's link (as `upsert_link`) and complete its entry (as `complete`),
        all at once; how many entries were completed. Records whose lease `owner` no longer
        holds change nothing, their links included."""
        self._live()
        for r in records:
            if r.link is not None:
                _keyed(r.link)
        if not records:
            return 0
        outcomes = [(r.entry_id, _json(r.transferred), _json(r.skipped)) for r in records]
        self._upsert_links(
            [
                r.link
                for r in records
                if r.link is not None and self._held(r.entry_id, owner) is not None
            ]
        )
        done = 0
        for entry_id, transferred, skipped in outcomes:
            e = self._held(entry_id, owner)
            if e is not None:
                self._complete(e, transferred, skipped, run_id)
                done += 1
        return done

    async def record_settled(
        self, settled: Sequence[SettledChange], *, run_id: int | None = None
    ) -> int:
        """Upsert the links of `settled` (as `upsert_link`) and insert each change's entry in
        its final status, all at once; how many entries were inserted.

        Only for records with no entry pending or processing (the caller makes sure).
        """
        self._live()
        for s in settled:
            if s.status not in _FINAL:
                raise ValueError(f"a settled entry is processed, error or excluded: {s.status}")
            if s.status is EntryStatus.ERROR and s.error_category is None:
                raise ValueError("a settled error needs its category")
            if s.link is not None:
                _keyed(s.link)
        if not settled:
            return 0
        now, tick = utcnow(), self._tick()
        # Built (and JSON-encoded) before anything is written: a bad value changes nothing.
        entries = [self._settled_entry(s, run_id, now, tick) for s in settled]
        self._upsert_links([s.link for s in settled if s.link is not None])
        for e in entries:
            e.id = next(self._entry_ids)
            self._add(e)
        return len(entries)

    @staticmethod
    def _settled_entry(s: SettledChange, run_id: int | None, now: datetime, tick: int) -> Entry:
        """The entry of a settled change as `complete`, `fail` or `exclude` would leave it."""
        c = s.change
        error = s.status is EntryStatus.ERROR
        excluded = s.status is EntryStatus.EXCLUDED
        processed = s.status is EntryStatus.PROCESSED
        e = Entry(
            id=0,  # numbered once the whole call is known to succeed
            direction=Direction(c.direction),
            object=ObjectType(c.object),
            record_key=c.record_key,
            source=c.source,
            event=c.event,
            email=c.email,
            name=c.name,
            payload=_json(c.fields),
            changed=frozenset(c.fields),
            status=EntryStatus(s.status),
            created_at=now,
            updated_at=now,
            arrived=tick,
            attempts=1 if error else 0,
            run_id=run_id,
        )
        if error and s.error_category is not None:
            e.error_category = ErrorCategory(s.error_category)
        e.error_code = (s.error_code or "ERROR") if error else ("excluded" if excluded else None)
        e.error_message = s.message if error or excluded else None
        if processed:
            e.transferred, e.skipped = _json(s.transferred), _json(s.skipped)
        return e
