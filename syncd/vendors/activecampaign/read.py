"""ActiveCampaign reads: contacts (by id, by email, changed, deleted), accounts and deals,
and the field catalogue that names custom fields.

A contact row carries neither its tags nor its custom field values: tags are added with
one query per sync tag and page, custom fields (only when asked for by name) with one call
per contact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.model import DeletedRecord, FieldInfo, ObjectType, Page, Record
from syncd.rules import Rule
from syncd.vendors.activecampaign.answers import (
    PAGE,
    PLAIN,
    STAMPS,
    STANDARD_CONTACT_FIELDS,
    Cursor,
    Rejected,
    contact_record,
    newer,
    parse_ac_datetime,
    plain_record,
    query_since,
)
from syncd.vendors.activecampaign.imports import changed_contacts
from syncd.vendors.activecampaign.tags import AcTags

READ_SKEW = timedelta(seconds=60)  # tolerated clock difference between us and AC


class AcReads(AcTags):
    """The read and describe methods of `HubConnector`, and the custom field ids."""

    _field_ids: dict[str, str] | None
    _field_names: dict[str, str]
    _field_rows: list[dict[str, Any]]

    async def changed_since(
        self,
        obj: ObjectType,
        cursor: str | None,
        *,
        fields: Sequence[str] = (),
        criteria: Rule | None = None,
    ) -> AsyncIterator[Page]:
        """Pages of records updated after `cursor`, by ascending id; criteria are the engine's."""
        if obj in PLAIN:
            async for page in self._plain_changed(obj, cursor):
                yield page
            return
        self._contacts_only(obj)
        cur = Cursor.decode(cursor)
        since_q = query_since(cur.since)
        after, newest = cur.after_id, cur.newest or cur.since
        # A contact with a low id updated while we page past it is older than the newest
        # udate we see later, so a finished read never moves the cursor past its own start.
        ceiling = (datetime.now(UTC) - READ_SKEW).isoformat(timespec="seconds")

        def final() -> str | None:
            capped = newest if newer(newest, ceiling) == ceiling else ceiling
            return newer(capped, cur.since) if newest else cur.since

        while True:
            rows = await changed_contacts(self.call, after, since_q)
            if not rows:
                yield Page((), Cursor(final()).encode())
                return
            records = await self._decorate(rows, fields)
            for r in rows:
                newest = newer(newest, r.get("udate"))
            after = int(rows[-1]["id"])
            if len(rows) < PAGE:
                yield Page(tuple(records), Cursor(final()).encode())
                return
            yield Page(tuple(records), Cursor(cur.since, after, newest).encode())

    async def _decorate(self, rows: list[dict[str, Any]], fields: Sequence[str]) -> list[Record]:
        ids = [str(r["id"]) for r in rows]
        tags = await self._sync_tags_of(ids)
        records = [contact_record(r, tags.get(str(r["id"]), frozenset())) for r in rows]
        wanted = [f for f in fields if f not in STANDARD_CONTACT_FIELDS and f != "tags"]
        if not wanted:
            return records
        await self.field_ids()
        out = []
        for rec in records:
            body = await self.call(
                "GET", f"/contacts/{rec.id}/fieldValues", endpoint="contacts.fieldValues"
            )
            extra = {
                self._field_names.get(str(fv.get("field")), str(fv.get("field"))): fv.get("value")
                for fv in body.get("fieldValues") or []
            }
            # A field of the account the contact has no value for is empty, not unknown.
            empty = {k: None for k in wanted if k in self._field_names.values()}
            merged = {**rec.fields, **empty, **{k: v for k, v in extra.items() if k in wanted}}
            out.append(
                Record(
                    rec.object,
                    rec.id,
                    merged,
                    rec.modified_at,
                    rec.created_at,
                    rec.deleted,
                    rec.tags,
                )
            )
        return out

    async def _plain_changed(self, obj: ObjectType, cursor: str | None) -> AsyncIterator[Page]:
        kind = PLAIN[obj]
        since = parse_ac_datetime(cursor)
        newest = cursor
        offset = 0
        while True:
            body = await self.call(
                "GET",
                f"/{kind}s",
                endpoint=f"{kind}s.list",
                params={"limit": str(PAGE), "offset": str(offset)},
            )
            rows = list(body.get(f"{kind}s") or [])
            recs = [plain_record(obj, r, *STAMPS[kind]) for r in rows]
            recs = [r for r in recs if since is None or (r.modified_at and r.modified_at >= since)]
            for r in recs:
                if r.modified_at is not None:
                    newest = newer(newest, r.modified_at.isoformat(timespec="seconds"))
            offset += len(rows)
            last = len(rows) < PAGE
            yield Page(tuple(recs), newest if last else cursor)
            if last:
                return

    async def get_by_ids(
        self, obj: ObjectType, ids: Sequence[str], *, fields: Sequence[str] = ()
    ) -> list[Record]:
        """Current state of the given records; missing or deleted ones are left out."""
        if obj in PLAIN:
            kind = PLAIN[obj]
            out = []
            for rid in ids:
                try:
                    body = await self.call("GET", f"/{kind}s/{rid}", endpoint=f"{kind}s.get")
                except Rejected:
                    continue
                out.append(plain_record(obj, body[kind], *STAMPS[kind]))
            return out
        self._contacts_only(obj)
        records: list[Record] = []
        unique = list(dict.fromkeys(str(i) for i in ids))
        for start in range(0, len(unique), PAGE):
            chunk = unique[start : start + PAGE]
            params = [("ids[]", i) for i in chunk] + [("limit", str(PAGE))]
            body = await self.call("GET", "/contacts", endpoint="contacts.list", params=params)
            rows = [r for r in body.get("contacts") or [] if str(r.get("deleted", "0")) != "1"]
            records.extend(await self._decorate(rows, fields))
        return records

    async def find_by_emails(self, emails: Sequence[str]) -> dict[str, Record]:
        """Existing contacts keyed by lower-cased, trimmed email (one call per email)."""
        keys = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        rows: dict[str, dict[str, Any]] = {}
        for key in keys:
            body = await self.call(
                "GET", "/contacts", endpoint="contacts.by_email", params={"email": key}
            )
            for row in body.get("contacts") or []:
                if str(row.get("email", "")).strip().lower() == key:
                    rows[key] = row
                    break
        tags = await self._sync_tags_of([str(r["id"]) for r in rows.values()])
        return {k: contact_record(r, tags.get(str(r["id"]), frozenset())) for k, r in rows.items()}

    async def deleted_since(
        self, obj: ObjectType, cursor: str | None
    ) -> tuple[list[DeletedRecord], str | None]:
        """Contacts deleted after `cursor` (AC keeps them flagged ``deleted``)."""
        if obj is not ObjectType.CONTACT:
            return [], cursor
        since_q = query_since(cursor)
        out: list[DeletedRecord] = []
        newest, after = cursor, 0
        while True:
            rows = await changed_contacts(self.call, after, since_q, deleted=True)
            for r in rows:
                out.append(DeletedRecord(obj, str(r["id"]), parse_ac_datetime(r.get("udate"))))
                newest = newer(newest, r.get("udate"))
            if len(rows) < PAGE:
                return out, newest
            after = int(rows[-1]["id"])

    async def field_ids(self) -> dict[str, str]:
        """Custom field id by lower-cased title, perstag or id (fetched once)."""
        if self._field_ids is None:
            ids: dict[str, str] = {}
            self._field_rows = []
            offset = 0
            while True:
                body = await self.call(
                    "GET",
                    "/fields",
                    endpoint="fields.list",
                    params={"limit": str(PAGE), "offset": str(offset)},
                )
                rows = body.get("fields") or []
                self._field_rows.extend(rows)
                for f in rows:
                    fid = str(f["id"])
                    for key in (f.get("title"), f.get("perstag"), fid):
                        if key:
                            ids[str(key).lower()] = fid
                    self._field_names[fid] = field_name(f)
                offset += len(rows)
                if len(rows) < PAGE:
                    break
            self._field_ids = ids
        return self._field_ids

    async def describe(self, obj: ObjectType) -> list[FieldInfo]:
        """Standard fields plus, for contacts, the account's custom fields (``GET /fields``)."""
        if obj is ObjectType.ACCOUNT:
            return [FieldInfo("name", "text", True, "Name", 255), FieldInfo("accountUrl", "url")]
        if obj is ObjectType.OPPORTUNITY:
            return [
                FieldInfo("title", "text", True, "Title"),
                FieldInfo("value", "currency", True, "Value (cents)"),
                FieldInfo("currency", "text", True, "Currency"),
                FieldInfo("stage", "reference", label="Stage"),
                FieldInfo("owner", "reference", label="Owner"),
                FieldInfo("contact", "reference", label="Contact"),
                FieldInfo("account", "reference", label="Account"),
                FieldInfo("description", "textarea", label="Description"),
            ]
        self._contacts_only(obj)
        self._field_ids = None
        await self.field_ids()
        out = [
            FieldInfo("email", "email", True, "Email", 255),
            FieldInfo("firstName", "text", False, "First name", 255),
            FieldInfo("lastName", "text", False, "Last name", 255),
            FieldInfo("phone", "phone", False, "Phone", 255),
        ]
        for f in self._field_rows:
            out.append(
                FieldInfo(
                    name=field_name(f),
                    type=str(f.get("type", "text")),
                    required=str(f.get("isrequired", "0")) == "1",
                    label=str(f.get("title", "")) or None,
                )
            )
        return out


def field_name(f: dict[str, Any]) -> str:
    """The one name syncd gives an ActiveCampaign custom field, in the mapping, in reads and
    writes and in `check-config --online`: its personalization tag in lower case
    (``COMPANY`` is ``company``), else its title in lower case. Writes also accept the
    title or the id."""
    return str(f.get("perstag") or f.get("title") or f["id"]).strip().lower()
