"""HubSpot reads: records changed (through search), by id, by email, archived, or by the
value of one property, and the properties an object has.

Only the properties asked for come back, so every read names them: the base set of the
object, its timestamps, the fields the caller wants and those its rule needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from syncd.model import DeletedRecord, FieldInfo, ObjectType, Page, Record
from syncd.rules import Rule
from syncd.vendors.hubspot.answers import (
    BASE_PROPERTIES,
    LIST_PAGE,
    MODIFIED,
    OBJECTS,
    OPTOUT,
    SEARCH_CAP,
    SEARCH_PAGE,
    chunks,
    normalize_domain,
    parse_cursor,
    parse_hs_datetime,
    to_ms,
    to_record,
)
from syncd.vendors.hubspot.base import HubSpotBase
from syncd.vendors.hubspot.search import rule_fields, rule_groups, rule_matches, walk_changes


class HubSpotReads(HubSpotBase):
    """The read and describe methods of `HubConnector`, and lookups by property value."""

    search_window_cap: int

    def _properties(self, hs_obj: str, fields: Sequence[str], rule: Rule | None) -> list[str]:
        names = [*BASE_PROPERTIES[hs_obj], MODIFIED[hs_obj], "createdate", *fields]
        names.extend(sorted(rule_fields(rule)))
        if hs_obj == "contacts":
            names.extend((self.tag_property, OPTOUT))
        return list(dict.fromkeys(n for n in names if n != "tags"))

    async def changed_since(
        self,
        obj: ObjectType,
        cursor: str | None,
        *,
        fields: Sequence[str] = (),
        criteria: Rule | None = None,
    ) -> AsyncIterator[Page]:
        """Records modified at or after `cursor` (epoch ms), oldest first.

        The cursor of each page is the newest modification time seen; resuming at it
        re-reads records with exactly that time rather than risk skipping any.
        """
        hs_obj = OBJECTS[obj]
        since = parse_cursor(cursor)
        groups = rule_groups(criteria)
        local_rule = criteria if groups is None else None
        props = self._properties(hs_obj, fields, criteria)
        pages = walk_changes(
            self.search,
            hs_obj,
            since,
            props,
            groups or [[]],
            page_size=SEARCH_PAGE,
            cap=self.search_window_cap,
        )
        async for rows, newest in pages:
            records = [to_record(obj, r, self.tag_property) for r in rows]
            if local_rule is not None:
                records = [r for r in records if rule_matches(local_rule, r.fields)]
            yield Page(tuple(records), str(newest) if newest is not None else cursor)

    def cursor_before(self, cursor: str, seconds: float) -> str:
        """`cursor` moved `seconds` back (epoch ms), for a poll that re-reads a window."""
        ms = parse_cursor(cursor)
        return cursor if ms is None else str(ms - int(seconds * 1000))

    def later_cursor(self, a: str, b: str) -> str:
        """The later of two cursors (epoch ms or ISO datetimes)."""
        return a if (parse_cursor(a) or 0) >= (parse_cursor(b) or 0) else b

    async def get_by_ids(
        self, obj: ObjectType, ids: Sequence[str], *, fields: Sequence[str] = ()
    ) -> list[Record]:
        """Current state of the records (missing or archived ones are left out)."""
        hs_obj = OBJECTS[obj]
        rows = await self._batch_read(
            hs_obj, [str(i) for i in ids], self._properties(hs_obj, fields, None)
        )
        return [to_record(obj, r, self.tag_property) for r in rows]

    async def find_by_emails(self, emails: Sequence[str]) -> dict[str, Record]:
        """Existing contacts keyed by lower-cased, trimmed email."""
        keys = [e.strip().lower() for e in emails if e and e.strip()]
        rows = await self._batch_read(
            "contacts", keys, self._properties("contacts", (), None), "email"
        )
        out: dict[str, Record] = {}
        for row in rows:
            rec = to_record(ObjectType.CONTACT, row, self.tag_property)
            if rec.email:
                out[rec.email.strip().lower()] = rec
        return out

    async def deleted_since(
        self, obj: ObjectType, cursor: str | None
    ) -> tuple[list[DeletedRecord], str | None]:
        """Archived records whose archive time is after `cursor` (epoch ms)."""
        hs_obj = OBJECTS[obj]
        since = parse_cursor(cursor)
        newest = since
        out: list[DeletedRecord] = []
        after: str | None = None
        while True:
            params = {"archived": "true", "limit": str(LIST_PAGE), "properties": "hs_object_id"}
            if after:
                params["after"] = after
            resp = await self.call(
                "GET", f"/crm/v3/objects/{hs_obj}", endpoint=f"{hs_obj}.list", params=params
            )
            data = resp.json() or {}
            for row in data.get("results") or []:
                when = parse_hs_datetime(row.get("archivedAt") or row.get("updatedAt"))
                ms = to_ms(when) if when else None
                if since is not None and (ms is None or ms <= since):
                    continue
                out.append(DeletedRecord(obj, str(row["id"]), when))
                if ms is not None and (newest is None or ms > newest):
                    newest = ms
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        out.sort(key=lambda d: (d.deleted_at is None, d.deleted_at))
        return out, (str(newest) if newest is not None else cursor)

    async def lookup_ids(self, hs_obj: str, prop: str, values: Sequence[str]) -> dict[str, str]:
        """Existing record ids by lower-cased value of `prop` (a search per 100 values)."""
        out: dict[str, str] = {}
        for chunk in chunks(list(values), 100):
            after = 0
            while True:
                body: dict[str, Any] = {
                    "filterGroups": [
                        {
                            "filters": [
                                {"propertyName": prop, "operator": "IN", "values": list(chunk)}
                            ]
                        }
                    ],
                    "properties": [prop],
                    "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                    "limit": SEARCH_PAGE,
                }
                if after:
                    body["after"] = str(after)
                data = await self.search(hs_obj, body)
                for row in data.get("results") or []:
                    raw = str((row.get("properties") or {}).get(prop) or "")
                    key = normalize_domain(raw) if prop == "domain" else raw.strip().lower()
                    out.setdefault(key, str(row["id"]))  # the oldest record wins
                nxt = ((data.get("paging") or {}).get("next") or {}).get("after")
                if not nxt or int(nxt) >= SEARCH_CAP:
                    break
                after = int(nxt)
        return out

    async def confirm_ids(self, hs_obj: str, prop: str, ids: Mapping[str, str]) -> dict[str, str]:
        """Those of `ids` (match value -> record id) whose record still exists with that value:
        one batch read by id per 100 (immediate, unlike search)."""
        rows = await self._batch_read(hs_obj, list(ids.values()), [prop])
        current: dict[str, str] = {}
        for row in rows:
            raw = str((row.get("properties") or {}).get(prop) or "")
            current[str(row["id"])] = (
                normalize_domain(raw) if prop == "domain" else raw.strip().lower()
            )
        return {value: rid for value, rid in ids.items() if current.get(rid) == value}

    async def describe(self, obj: ObjectType) -> list[FieldInfo]:
        """Property definitions of the object (hidden ones left out)."""
        hs_obj = OBJECTS[obj]
        resp = await self.call("GET", f"/crm/v3/properties/{hs_obj}", endpoint="properties.list")
        out = []
        for p in (resp.json() or {}).get("results") or []:
            if p.get("hidden"):
                continue
            out.append(
                FieldInfo(
                    name=str(p["name"]), type=str(p.get("type") or "string"), label=p.get("label")
                )
            )
        return out


def _option(value: str, order: int) -> dict[str, Any]:
    return {"label": value, "value": value, "displayOrder": order, "hidden": False}
