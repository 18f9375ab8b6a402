"""The HubSpot hub connector (CRM v3 objects and search, lists v3, v4 associations).

Call costs (all count against the 100-per-10-seconds limit and the daily quota; searches
also against the separate ~4-per-second search limit):

- ``changed_since``: one search per 200 records; one extra search per 10,000 records when
  the window moves past HubSpot's per-query cap.
- ``get_by_ids`` / ``find_by_emails``: one ``batch/read`` per 100 ids or emails.
- ``deleted_since``: one ``GET ?archived=true`` per 100 archived records (HubSpot cannot
  filter them by date, so the whole recycle bin is read).
- ``write``: see ``hubspot_write``. ``add_tags``: one PATCH (plus one property read, once,
  and one property update when an option is missing); ``remove_tags``: a read and a PATCH.
- ``subscribe``: one ``batch/read`` per 100 contacts (to keep opted-out contacts out) plus
  one membership call per 1,000 contacts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import structlog

from syncd.config import HubSettings
from syncd.errors import ConfigError
from syncd.model import (
    DeletedRecord,
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
from syncd.vendors.http import (
    HttpClient,
    HttpResponse,
    QuotaGuard,
    RateLimiter,
    RetryPolicy,
    StaticTokenAuth,
)
from syncd.vendors.hubspot.answers import (
    BASE_PROPERTIES,
    BATCH,
    LIST_PAGE,
    MODIFIED,
    NAME,
    OBJECTS,
    OPTOUT,
    SEARCH_CAP,
    SEARCH_PAGE,
    Rejected,
    chunks,
    classify,
    parse_cursor,
    parse_hs_datetime,
    quota_from_headers,
    split_tags,
    to_ms,
    to_record,
)
from syncd.vendors.hubspot.search import rule_fields, rule_groups, rule_matches, walk_changes
from syncd.vendors.hubspot.write import normalize_domain, write_records
from syncd.vendors.opportunity import to_hubspot_deal, translate
from syncd.vendors.protocols import ListMembershipResult

log = structlog.get_logger(__name__)
MEMBERSHIP_CHUNK = 1000
PRIMARY_COMPANY_TYPE = 1


class HubSpotConnector:
    """`HubConnector` for HubSpot: contacts, companies, deals, sync tags, lists."""

    name = NAME
    supports_last_broadcast = False

    def __init__(
        self,
        settings: HubSettings,
        *,
        search_rate: tuple[int, float] = (4, 1.0),
        search_window_cap: int = SEARCH_CAP,
        rate_margin: float = 0.05,
    ) -> None:
        if settings.kind != "hubspot":
            raise ConfigError(f"hub.kind is {settings.kind!r}, not 'hubspot'")
        self._base = settings.base_url
        self.tag_property = settings.tag_property
        self.search_window_cap = min(search_window_cap, SEARCH_CAP)
        rl = settings.effective_rate_limit
        h = settings.http
        self.quota_guard = QuotaGuard(NAME, reserve=settings.quota_reserve)
        token = settings.api_token
        # The margin keeps the server's window, which sees our requests a little later, from
        # ever counting one request too many.
        self.http = HttpClient(
            NAME,
            auth=StaticTokenAuth("Authorization", lambda: f"Bearer {token.get_secret_value()}"),
            classify=classify,
            rate_limiter=RateLimiter(rl.requests, rl.per_seconds + rate_margin),
            retry=RetryPolicy(h.retry_attempts, h.retry_base_delay, h.retry_max_delay),
            connect_timeout=h.connect_timeout,
            read_timeout=h.read_timeout,
            on_response=self._track_quota,
        )
        calls, period = search_rate
        self.search_limiter = RateLimiter(calls, period + rate_margin)
        self._tag_options: set[str] | None = None

    # ---- plumbing ----------------------------------------------------------------------
    def _track_quota(self, resp: HttpResponse) -> None:
        used, limit = quota_from_headers(resp.headers)
        if used is not None and limit is not None:
            self.quota_guard.update(used, limit)

    async def call(
        self, method: str, path: str, *, endpoint: str, json_body: Any = None, params: Any = None
    ) -> HttpResponse:
        """One API call through the shared client (retries, rate limit, classification)."""
        return await self.http.request(
            method, self._base + path, endpoint=endpoint, json_body=json_body, params=params
        )

    async def post_json(self, path: str, body: Any, *, endpoint: str) -> tuple[int, Any]:
        """POST a JSON body (a value, or its encoded bytes); (status, decoded body)."""
        resp = await self.call("POST", path, endpoint=endpoint, json_body=body)
        return resp.status, resp.json()

    async def search(self, hs_obj: str, body: dict[str, Any]) -> dict[str, Any]:
        """One search call, paced by the separate search limit."""
        await self.search_limiter.acquire()
        resp = await self.call(
            "POST", f"/crm/v3/objects/{hs_obj}/search", endpoint=f"{hs_obj}.search", json_body=body
        )
        data = resp.json()
        return data if isinstance(data, dict) else {}

    def check_write_quota(self) -> None:
        """Refuse writes once only the reserved share of the daily quota is left."""
        self.quota_guard.check_write()

    async def start(self) -> None:
        """Nothing to authenticate up front: private-app tokens are static."""

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()

    async def check_auth(self) -> None:
        """``GET /account-info/v3/details``; a bad token raises AuthError."""
        await self.call("GET", "/account-info/v3/details", endpoint="account.details")

    def quota(self) -> QuotaState | None:
        """The daily quota from the last response's X-HubSpot-RateLimit-Daily* headers."""
        return self.quota_guard.state

    # ---- reads -------------------------------------------------------------------------
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

    async def _batch_read(
        self, hs_obj: str, keys: Sequence[str], props: list[str], id_property: str | None = None
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for chunk in chunks(list(dict.fromkeys(keys)), BATCH):
            body: dict[str, Any] = {"inputs": [{"id": k} for k in chunk], "properties": props}
            if id_property:
                body["idProperty"] = id_property
            _, data = await self.post_json(
                f"/crm/v3/objects/{hs_obj}/batch/read", body, endpoint=f"{hs_obj}.batch.read"
            )
            rows.extend((data or {}).get("results") or [])  # 207 errors: ids that are gone
        return rows

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

    # ---- writes ------------------------------------------------------------------------
    async def write(
        self,
        obj: ObjectType,
        op: WriteOp,
        items: Sequence[WriteItem],
        *,
        match_field: str | None = None,
    ) -> list[WriteResult]:
        """Batch-write; contacts match on email, companies on domain then name."""
        if obj is ObjectType.OPPORTUNITY:
            items = translate(items, to_hubspot_deal)
        # "lists" is not a property: the contacts are added to those lists after the write
        # (one memberships call per list and 100 contacts; opted-out contacts stay out).
        wanted = [[str(x) for x in (i.fields.get("lists") or [])] for i in items]
        if any(wanted):
            items = [
                WriteItem({k: v for k, v in i.fields.items() if k != "lists"}, id=i.id)
                for i in items
            ]
        results = await write_records(self, obj, op, items, match_field)
        by_list: dict[str, list[str]] = {}
        for lists, res in zip(wanted, results, strict=True):
            if res.ok and res.id:
                for list_id in lists:
                    by_list.setdefault(list_id, []).append(res.id)
        for list_id, ids in by_list.items():
            await self.subscribe(list_id, ids)
        return results

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

    # ---- tags --------------------------------------------------------------------------
    async def ensure_tag_options(self, tags: Sequence[str]) -> None:
        """Add missing values to the tag property's options (creating the property if needed)."""
        if self._tag_options is not None and all(t in self._tag_options for t in tags):
            return
        path = f"/crm/v3/properties/contacts/{self.tag_property}"
        try:
            resp = await self.call("GET", path, endpoint="properties.get")
            options = list((resp.json() or {}).get("options") or [])
        except Rejected as exc:
            if exc.status != 404:
                raise
            body = {
                "name": self.tag_property,
                "label": "Sync tags",
                "type": "enumeration",
                "fieldType": "checkbox",
                "groupName": "contactinformation",
                "options": [_option(t, i) for i, t in enumerate(dict.fromkeys(tags))],
            }
            await self.call(
                "POST", "/crm/v3/properties/contacts", endpoint="properties.create", json_body=body
            )
            self._tag_options = set(tags)
            return
        have = {str(o.get("value")) for o in options}
        missing = [t for t in dict.fromkeys(tags) if t not in have]
        if missing:
            options.extend(_option(t, len(options) + i) for i, t in enumerate(missing))
            await self.call(
                "PATCH", path, endpoint="properties.update", json_body={"options": options}
            )
        self._tag_options = have | set(missing)

    async def get_tags(self, contact_id: str) -> frozenset[str]:
        """The sync tags on a contact."""
        resp = await self.call(
            "GET",
            f"/crm/v3/objects/contacts/{contact_id}",
            endpoint="contacts.get",
            params={"properties": self.tag_property},
        )
        return split_tags(((resp.json() or {}).get("properties") or {}).get(self.tag_property))

    async def add_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        """Append tags to the multi-checkbox property (a leading ';' appends in HubSpot)."""
        wanted = [t for t in dict.fromkeys(tags) if t]
        if not wanted:
            return
        await self.ensure_tag_options(wanted)
        self.check_write_quota()
        await self._patch_contact(contact_id, {self.tag_property: ";" + ";".join(wanted)})

    async def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        """Remove tags: read the current values, write back the rest."""
        current = await self.get_tags(contact_id)
        remaining = [t for t in sorted(current) if t not in set(tags)]
        if len(remaining) == len(current):
            return
        self.check_write_quota()
        await self._patch_contact(contact_id, {self.tag_property: ";".join(remaining)})

    async def _patch_contact(self, contact_id: str, props: dict[str, str]) -> None:
        await self.call(
            "PATCH",
            f"/crm/v3/objects/contacts/{contact_id}",
            endpoint="contacts.update",
            json_body={"properties": props},
        )

    # ---- lists -------------------------------------------------------------------------
    async def subscribe(
        self, list_id: str, contact_ids: Sequence[str]
    ) -> list[ListMembershipResult]:
        """Add contacts to a manual list; contacts that opted out of email are left out."""
        ids = [str(c) for c in dict.fromkeys(contact_ids)]
        rows = await self._batch_read("contacts", ids, [OPTOUT, "email"])
        known = {str(r["id"]): r for r in rows}
        results: dict[str, ListMembershipResult] = {}
        to_add: list[str] = []
        for cid in ids:
            row = known.get(cid)
            if row is None:
                results[cid] = ListMembershipResult(cid, False, False, "contact not found")
            elif str((row.get("properties") or {}).get(OPTOUT) or "").lower() == "true":
                results[cid] = ListMembershipResult(
                    cid, True, False, "contact opted out of email; left unsubscribed"
                )
            else:
                to_add.append(cid)
        for chunk in chunks(to_add, MEMBERSHIP_CHUNK):
            self.check_write_quota()
            resp = await self.call(
                "PUT",
                f"/crm/v3/lists/{list_id}/memberships/add",
                endpoint="lists.memberships.add",
                json_body=list(chunk),
            )
            missing = {str(m) for m in (resp.json() or {}).get("recordIdsMissing") or []}
            for cid in chunk:
                if cid in missing:
                    results[cid] = ListMembershipResult(cid, False, False, "contact not found")
                else:
                    results[cid] = ListMembershipResult(cid, True, True)
        return [results[str(c)] for c in contact_ids]

    async def remove_from_list(self, list_id: str, contact_ids: Sequence[str]) -> None:
        """Take contacts off a manual list."""
        ids = [str(c) for c in dict.fromkeys(contact_ids)]
        for chunk in chunks(ids, MEMBERSHIP_CHUNK):
            self.check_write_quota()
            await self.call(
                "PUT",
                f"/crm/v3/lists/{list_id}/memberships/remove",
                endpoint="lists.memberships.remove",
                json_body=list(chunk),
            )

    async def send_last_broadcast(self, list_id: str, contact_ids: Sequence[str]) -> None:
        """Not available: HubSpot's public API cannot send a past marketing email to new members."""
        raise ConfigError(
            f"{NAME}: sending a list's last campaign is not supported: HubSpot's public API "
            "has no call to send an already-sent marketing email to new list members; turn "
            "send_last_broadcast off for this list (or use a HubSpot workflow on list entry)"
        )

    # ---- associations ------------------------------------------------------------------
    async def set_primary_company(self, contact_id: str, company_id: str) -> None:
        """Associate a contact with its primary company (v4 associations)."""
        self.check_write_quota()
        await self.call(
            "PUT",
            f"/crm/v4/objects/contact/{contact_id}/associations/company/{company_id}",
            endpoint="associations.put",
            json_body=[
                {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": PRIMARY_COMPANY_TYPE,
                }
            ],
        )

    async def primary_companies(self, contact_ids: Sequence[str]) -> dict[str, str]:
        """Each contact's primary company id (contacts without one are left out)."""
        out: dict[str, str] = {}
        for chunk in chunks([str(c) for c in contact_ids], 1000):
            _, data = await self.post_json(
                "/crm/v4/associations/contact/company/batch/read",
                {"inputs": [{"id": c} for c in chunk]},
                endpoint="associations.batch.read",
            )
            for row in (data or {}).get("results") or []:
                for target in row.get("to") or []:
                    types = {t.get("typeId") for t in target.get("associationTypes") or []}
                    if PRIMARY_COMPANY_TYPE in types:
                        out[str(row["from"]["id"])] = str(target["toObjectId"])
        return out

    # ---- metadata ----------------------------------------------------------------------
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
