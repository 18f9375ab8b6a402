"""The HubSpot hub connector (CRM v3 objects and search, lists v3, v4 associations).

Call costs (all count against the 100-per-10-seconds limit and the daily quota; searches
also against the separate ~4-per-second search limit):

- ``changed_since``: one search per 200 records; one extra search per 10,000 records when
  the window moves past HubSpot's per-query cap.
- ``get_by_ids`` / ``find_by_emails``: one ``batch/read`` per 100 ids or emails.
- ``deleted_since``: one ``GET ?archived=true`` per 100 archived records (HubSpot cannot
  filter them by date, so the whole recycle bin is read).
- ``write``: see write.py. ``add_tags``: one PATCH (plus one property read, once,
  and one property update when an option is missing); ``remove_tags``: a read and a PATCH.
- ``subscribe``: one ``batch/read`` per 100 contacts (to keep opted-out contacts out) plus
  one membership call per 1,000 contacts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from syncd.config import HubSettings
from syncd.errors import ConfigError
from syncd.model import ObjectType, QuotaState, WriteItem, WriteOp, WriteResult
from syncd.vendors.http import (
    HttpClient,
    HttpResponse,
    QuotaGuard,
    RateLimiter,
    RetryPolicy,
    StaticTokenAuth,
)
from syncd.vendors.hubspot.answers import (
    NAME,
    OBJECTS,
    SEARCH_CAP,
    chunks,
    classify,
    quota_from_headers,
)
from syncd.vendors.hubspot.lists import HubSpotLists
from syncd.vendors.hubspot.read import HubSpotReads
from syncd.vendors.hubspot.recent import RecentWrites
from syncd.vendors.hubspot.tags import HubSpotTags
from syncd.vendors.hubspot.write import write_records
from syncd.vendors.opportunity import to_hubspot_deal, translate

# HubSpot-defined association types to a company: (with Primary Company, unlabeled)
# (developers.hubspot.com, "Associations v4: association type IDs").
PRIMARY_TYPES = {
    ObjectType.CONTACT: ("contact", (1, 279)),
    ObjectType.OPPORTUNITY: ("deal", (5, 341)),
}


class HubSpotConnector(HubSpotReads, HubSpotTags, HubSpotLists):
    """`HubConnector` for HubSpot: contacts, companies, deals, sync tags, lists."""

    name = NAME
    supports_last_broadcast = False
    keeps_primary_companies = True
    emails_per_lookup = 100  # batch read by idProperty=email: 100 inputs per call

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
        self._recent = RecentWrites()

    @property
    def recent(self) -> RecentWrites:
        """The records this connector wrote lately, by match value (see recent.py)."""
        return self._recent

    def _track_quota(self, resp: HttpResponse) -> None:
        used, limit = quota_from_headers(resp.headers)
        if used is not None and limit is not None:
            self.quota_guard.update(used, limit)

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

    async def write(
        self,
        obj: ObjectType,
        op: WriteOp,
        items: Sequence[WriteItem],
        *,
        match_field: str | None = None,
        need_ids: bool = True,  # batch writes answer ids at no cost: always given
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

    async def delete(self, obj: ObjectType, ids: Sequence[str]) -> list[WriteResult]:
        """Archive records, 100 a call (``POST /crm/v3/objects/{object}/batch/archive``,
        204); HubSpot archives an unknown id silently, so every id is reported deleted."""
        hs_obj = OBJECTS[obj]
        for chunk in chunks(list(ids), 100):
            await self.call(
                "POST",
                f"/crm/v3/objects/{hs_obj}/batch/archive",
                endpoint=f"{hs_obj}.batch.archive",
                json_body={"inputs": [{"id": i} for i in chunk]},
            )
        return [WriteResult(True, id=str(i)) for i in ids]

    async def set_primary_companies(self, obj: ObjectType, pairs: Mapping[str, str]) -> int:
        """Make each contact's or deal's primary company the one given (hub record id ->
        company id), re-pointing it when it had another: one batch read per 1,000 records,
        then per change a v4 PUT with the "with Primary Company" type (and a DELETE of the
        old association). How many changed."""
        from_obj, (primary_type, _) = PRIMARY_TYPES[obj]
        current: dict[str, str] = {}
        for chunk in chunks(list(pairs), 1000):
            _, data = await self.post_json(
                f"/crm/v4/associations/{from_obj}/company/batch/read",
                {"inputs": [{"id": c} for c in chunk]},
                endpoint="associations.batch.read",
            )
            for row in (data or {}).get("results") or []:
                for target in row.get("to") or []:
                    types = {t.get("typeId") for t in target.get("associationTypes") or []}
                    if primary_type in types:
                        current[str(row["from"]["id"])] = str(target["toObjectId"])
        changed = 0
        for rid, company in pairs.items():
            old = current.get(rid)
            if old == company:
                continue
            self.check_write_quota()
            if old is not None:
                await self.call(
                    "DELETE",
                    f"/crm/v4/objects/{from_obj}/{rid}/associations/company/{old}",
                    endpoint="associations.delete",
                )
            await self.call(
                "PUT",
                f"/crm/v4/objects/{from_obj}/{rid}/associations/company/{company}",
                endpoint="associations.put",
                json_body=[
                    {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": primary_type}
                ],
            )
            changed += 1
        return changed
