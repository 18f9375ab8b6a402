"""The ActiveCampaign hub connector (API v3, plus one v1 call for last broadcasts).

Call costs (each call counts against AC's 5 requests/second):

- ``changed_since(CONTACT)``: one ``GET /contacts`` per 100 contacts, plus one
  ``GET /contacts?tagid=T&ids[]=…`` per existing sync tag per page (at most 5) to fill
  ``Record.tags``; custom fields, when asked for by name, cost one call per contact.
- ``get_by_ids``: one call per 100 ids plus the tag calls; ``find_by_emails``: one per email.
- ``write``: see ``activecampaign_write``; bulk imports are also held to AC's 100 a minute.
- ``add_tags``/``remove_tags``: one read plus one call per tag actually added or removed
  (tag ids are cached; missing tags are created once).
- ``subscribe``: one read per 100 contacts (to find who unsubscribed) plus one call per contact.
- ``send_last_broadcast``: one read per 100 contacts plus one v1 ``contact_sync`` per active member.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from syncd.config import HubSettings
from syncd.errors import AuthError, ConfigError, RecordError
from syncd.model import (
    DeletedRecord,
    ErrorCategory,
    FieldInfo,
    ObjectType,
    Page,
    QuotaState,
    Record,
    WriteItem,
    WriteOp,
    WriteResult,
)
from syncd.rules import Rule
from syncd.vendors.activecampaign.answers import (
    NAME,
    STANDARD_CONTACT_FIELDS,
    SYNC_TAGS,
    Cursor,
    Rejected,
    classify,
    contact_record,
    newer,
    parse_ac_datetime,
    plain_record,
    query_since,
    vendor_message,
)
from syncd.vendors.activecampaign.write import (
    ContactWatermark,
    write_contacts,
    write_plain,
)
from syncd.vendors.http import (
    HttpClient,
    HttpResponse,
    RateLimiter,
    RetryPolicy,
    StaticTokenAuth,
)
from syncd.vendors.opportunity import to_activecampaign_deal, translate
from syncd.vendors.protocols import ListMembershipResult

log = structlog.get_logger(__name__)
PAGE = 100
MISSING_TAG_TTL = 300.0
READ_SKEW = timedelta(seconds=60)  # tolerated clock difference between us and AC
_PLAIN = {ObjectType.ACCOUNT: "account", ObjectType.OPPORTUNITY: "deal"}
_STAMPS = {"account": ("createdTimestamp", "updatedTimestamp"), "deal": ("cdate", "mdate")}


class ActiveCampaignConnector:
    """`HubConnector` for ActiveCampaign: contacts, tags, lists, accounts and deals."""

    name = NAME
    supports_last_broadcast = True

    def __init__(
        self,
        settings: HubSettings,
        *,
        bulk_threshold: int = 20,
        import_poll_interval: float = 0.5,
        import_timeout: float = 600.0,
        confirm_imports: bool = True,
        rate_margin: float = 0.05,
        bulk_rate: tuple[int, float] | None = (100, 60.0),
    ) -> None:
        if settings.kind != "activecampaign":
            raise ConfigError(f"hub.kind is {settings.kind!r}, not 'activecampaign'")
        self._base = settings.base_url
        # API v1 lives beside v3 on the same host: {account URL}/admin/api.php.
        self._v1_url = self._base.removesuffix("/api/3") + "/admin/api.php"
        self._token = settings.api_token
        self.bulk_threshold = bulk_threshold
        self.import_poll_interval = import_poll_interval
        self.import_timeout = import_timeout
        self.confirm_imports = confirm_imports
        # AC allows 100 multi-contact bulk_import requests a minute, on top of 5 calls/s.
        self.bulk_limiter = RateLimiter(*bulk_rate) if bulk_rate else None
        self.contact_mark = ContactWatermark()
        rl = settings.effective_rate_limit
        h = settings.http
        # The margin keeps the server's window (which sees our requests a little later and
        # with jitter) from ever counting one request too many.
        self.http = HttpClient(
            NAME,
            auth=StaticTokenAuth("Api-Token", self._token.get_secret_value),
            classify=classify,
            rate_limiter=RateLimiter(rl.requests, rl.per_seconds + rate_margin),
            retry=RetryPolicy(h.retry_attempts, h.retry_base_delay, h.retry_max_delay),
            connect_timeout=h.connect_timeout,
            read_timeout=h.read_timeout,
        )
        self._tag_ids: dict[str, str] = {}
        self._missing_tags: dict[str, float] = {}
        self._field_ids: dict[str, str] | None = None
        self._field_names: dict[str, str] = {}
        self._field_rows: list[dict[str, Any]] = []

    # ---- plumbing ----------------------------------------------------------------------
    async def raw(
        self, method: str, path: str, *, endpoint: str, json_body: Any = None, params: Any = None
    ) -> HttpResponse:
        """One v3 call through the shared client."""
        return await self.http.request(
            method, self._base + path, endpoint=endpoint, json_body=json_body, params=params
        )

    async def call(
        self, method: str, path: str, *, endpoint: str, json_body: Any = None, params: Any = None
    ) -> Any:
        """One v3 call; the decoded body ({} when empty)."""
        resp = await self.raw(method, path, endpoint=endpoint, json_body=json_body, params=params)
        return resp.json() or {}

    async def start(self) -> None:
        """Nothing to authenticate up front: the session opens on first use."""

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()

    async def check_auth(self) -> None:
        """``GET /users/me``; a bad token raises AuthError."""
        await self.call("GET", "/users/me", endpoint="users.me")

    def quota(self) -> QuotaState | None:
        """AC has no daily quota, only the per-second rate limit."""
        return None

    # ---- reads -------------------------------------------------------------------------
    async def changed_since(
        self,
        obj: ObjectType,
        cursor: str | None,
        *,
        fields: Sequence[str] = (),
        criteria: Rule | None = None,
    ) -> AsyncIterator[Page]:
        """Pages of records updated after `cursor`, by ascending id; criteria are the engine's."""
        if obj in _PLAIN:
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
            rows = await self._contact_page(after, since_q)
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

    async def _contact_page(
        self, after: int, since_q: str | None, *, deleted: bool = False
    ) -> list[dict[str, Any]]:
        params = [("orders[id]", "ASC"), ("limit", str(PAGE)), ("id_greater", str(after))]
        if since_q:
            params.append(("filters[updated_after]", since_q))
        if deleted:
            params.append(("filters[deleted]", "1"))  # (unverified) how AC lists deleted ones
        body = await self.call("GET", "/contacts", endpoint="contacts.list", params=params)
        return list(body.get("contacts") or [])

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
            merged = {**rec.fields, **{k: v for k, v in extra.items() if k in wanted}}
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
        kind = _PLAIN[obj]
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
            recs = [plain_record(obj, r, *_STAMPS[kind]) for r in rows]
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
        if obj in _PLAIN:
            kind = _PLAIN[obj]
            out = []
            for rid in ids:
                try:
                    body = await self.call("GET", f"/{kind}s/{rid}", endpoint=f"{kind}s.get")
                except Rejected:
                    continue
                out.append(plain_record(obj, body[kind], *_STAMPS[kind]))
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
            rows = await self._contact_page(after, since_q, deleted=True)
            for r in rows:
                out.append(DeletedRecord(obj, str(r["id"]), parse_ac_datetime(r.get("udate"))))
                newest = newer(newest, r.get("udate"))
            if len(rows) < PAGE:
                return out, newest
            after = int(rows[-1]["id"])

    # ---- writes ------------------------------------------------------------------------
    async def write(
        self,
        obj: ObjectType,
        op: WriteOp,
        items: Sequence[WriteItem],
        *,
        match_field: str | None = "email",
    ) -> list[WriteResult]:
        """Write records; one result per item in input order (see module doc for call costs)."""
        if obj is ObjectType.OPPORTUNITY:
            items = translate(items, to_activecampaign_deal)
        if obj in _PLAIN:
            return await write_plain(self, _PLAIN[obj], op, items, match_field)
        self._contacts_only(obj)
        if match_field not in (None, "email"):
            raise ConfigError(f"activecampaign matches contacts by email, not {match_field!r}")
        return await write_contacts(self, op, items)

    # ---- tags --------------------------------------------------------------------------
    async def _tag_id(self, name: str, *, create: bool) -> str | None:
        key = name.strip().lower()
        if key in self._tag_ids:
            return self._tag_ids[key]
        if not create and time.monotonic() - self._missing_tags.get(key, -1e9) < MISSING_TAG_TTL:
            return None
        body = await self.call(
            "GET", "/tags", endpoint="tags.search", params={"search": name.strip(), "limit": "100"}
        )
        for t in body.get("tags") or []:
            if str(t.get("tag", "")).strip().lower() == key:
                self._tag_ids[key] = str(t["id"])
                return self._tag_ids[key]
        if not create:
            self._missing_tags[key] = time.monotonic()
            return None
        made = await self.call(
            "POST",
            "/tags",
            endpoint="tags.create",
            json_body={"tag": {"tag": name.strip(), "tagType": "contact", "description": ""}},
        )
        self._tag_ids[key] = str(made["tag"]["id"])
        self._missing_tags.pop(key, None)
        return self._tag_ids[key]

    async def _sync_tags_of(self, contact_ids: Sequence[str]) -> dict[str, frozenset[str]]:
        """Sync tags per contact: one ``tagid`` query per existing sync tag per 100 contacts."""
        if not contact_ids:
            return {}
        tag_ids = {t: await self._tag_id(t, create=False) for t in sorted(SYNC_TAGS)}
        found: dict[str, set[str]] = {}
        for tag, tid in tag_ids.items():
            if tid is None:
                continue
            for start in range(0, len(contact_ids), PAGE):
                chunk = contact_ids[start : start + PAGE]
                params = [("tagid", tid), ("limit", str(PAGE))] + [("ids[]", c) for c in chunk]
                body = await self.call(
                    "GET", "/contacts", endpoint="contacts.by_tag", params=params
                )
                for row in body.get("contacts") or []:
                    found.setdefault(str(row["id"]), set()).add(tag)
        return {cid: frozenset(tags) for cid, tags in found.items()}

    async def _contact_tags(self, contact_id: str) -> dict[str, str]:
        """tag id -> contactTag id for one contact."""
        try:
            body = await self.call(
                "GET", f"/contacts/{contact_id}/contactTags", endpoint="contacts.contactTags"
            )
        except Rejected as exc:
            raise RecordError(
                ErrorCategory.REJECTED, "NOT_FOUND", vendor_message(exc.resp)
            ) from None
        return {str(ct["tag"]): str(ct["id"]) for ct in body.get("contactTags") or []}

    async def add_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        """Tag a contact; tags it already has are left alone, missing tags are created once."""
        have = await self._contact_tags(contact_id)
        for name in dict.fromkeys(tags):
            tid = await self._tag_id(name, create=True)
            if tid is None or tid in have:
                continue
            body = await self.call(
                "POST",
                "/contactTags",
                endpoint="contactTags.create",
                json_body={"contactTag": {"contact": contact_id, "tag": tid}},
            )
            have[tid] = str(body.get("contactTag", {}).get("id", ""))

    async def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        """Untag a contact; tags it does not carry are ignored."""
        have = await self._contact_tags(contact_id)
        for name in dict.fromkeys(tags):
            tid = await self._tag_id(name, create=False)
            if tid is None or tid not in have:
                continue
            try:
                await self.call(
                    "DELETE", f"/contactTags/{have.pop(tid)}", endpoint="contactTags.delete"
                )
            except Rejected:
                continue  # already gone: the goal is reached

    async def get_tags(self, contact_id: str) -> frozenset[str]:
        """The sync tags a contact carries."""
        have = await self._contact_tags(contact_id)
        out = set()
        for tag in SYNC_TAGS:
            tid = await self._tag_id(tag, create=False)
            if tid is not None and tid in have:
                out.add(tag)
        return frozenset(out)

    # ---- lists -------------------------------------------------------------------------
    async def _members(self, list_id: str, ids: Sequence[str], status: int) -> dict[str, str]:
        """id -> email of the given contacts having `status` on the list."""
        out: dict[str, str] = {}
        for start in range(0, len(ids), PAGE):
            chunk = ids[start : start + PAGE]
            params = [("listid", list_id), ("status", str(status)), ("limit", str(PAGE))]
            params += [("ids[]", c) for c in chunk]
            body = await self.call("GET", "/contacts", endpoint="contacts.by_list", params=params)
            for row in body.get("contacts") or []:
                out[str(row["id"])] = str(row.get("email", ""))
        return out

    async def _set_status(self, list_id: str, contact_id: str, status: int) -> str | None:
        try:
            await self.call(
                "POST",
                "/contactLists",
                endpoint="contactLists.set",
                json_body={
                    "contactList": {"list": list_id, "contact": contact_id, "status": status}
                },
            )
        except Rejected as exc:
            return vendor_message(exc.resp)
        return None

    async def subscribe(
        self, list_id: str, contact_ids: Sequence[str]
    ) -> list[ListMembershipResult]:
        """Subscribe contacts; anyone who unsubscribed from the list stays unsubscribed."""
        ids = list(dict.fromkeys(str(c) for c in contact_ids))
        unsubscribed = await self._members(list_id, ids, 2)
        out = []
        for cid in ids:
            if cid in unsubscribed:
                out.append(ListMembershipResult(cid, True, False, "unsubscribed; left as is"))
                continue
            problem = await self._set_status(list_id, cid, 1)
            out.append(ListMembershipResult(cid, problem is None, problem is None, problem))
        by_id = {r.contact_id: r for r in out}
        return [by_id[str(c)] for c in contact_ids]

    async def remove_from_list(self, list_id: str, contact_ids: Sequence[str]) -> None:
        """AC takes a contact off a list by unsubscribing it (status 2)."""
        for cid in dict.fromkeys(str(c) for c in contact_ids):
            await self._set_status(list_id, cid, 2)

    async def send_last_broadcast(self, list_id: str, contact_ids: Sequence[str]) -> None:
        """Send the list's last campaign to active members, via API v1 ``lastmessage[L]``.

        v3 has no such call; v1 ``contact_sync`` with ``p[L]``, ``status[L]=1`` and
        ``lastmessage[L]=1`` does it. Only contacts active on the list are sent to, so the
        v1 call never re-subscribes anyone.
        """
        active = await self._members(list_id, list(dict.fromkeys(map(str, contact_ids))), 1)
        for cid, email in active.items():
            resp = await self.http.request(
                "POST",
                self._v1_url,
                endpoint="v1.contact_sync",
                params={
                    "api_action": "contact_sync",
                    "api_output": "json",
                    "api_key": self._token.get_secret_value(),
                },
                data={
                    "email": email,
                    f"p[{list_id}]": list_id,
                    f"status[{list_id}]": "1",
                    f"lastmessage[{list_id}]": "1",
                },
            )
            body = resp.json() or {}
            if str(body.get("result_code")) != "1":
                message = str(body.get("result_message", ""))
                if "not authorized" in message.lower():
                    raise AuthError(f"{NAME}: API v1 rejected the token: {message}")
                log.warning("last_broadcast_failed", contact_id=cid, message=message)

    # ---- describe ----------------------------------------------------------------------
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
                    self._field_names[fid] = str(f.get("perstag") or f.get("title") or fid)
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
                    name=str(f.get("perstag") or f.get("title")),
                    type=str(f.get("type", "text")),
                    required=str(f.get("isrequired", "0")) == "1",
                    label=str(f.get("title", "")) or None,
                )
            )
        return out

    @staticmethod
    def _contacts_only(obj: ObjectType) -> None:
        if obj not in (ObjectType.CONTACT, *_PLAIN):
            raise ConfigError(f"activecampaign has no {obj.value} records; map it to contact")
