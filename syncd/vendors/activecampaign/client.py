"""The ActiveCampaign hub connector (API v3, plus one v1 call for last broadcasts).

Call costs (each call counts against AC's 5 requests/second):

- ``changed_since(CONTACT)``: one ``GET /contacts`` per 100 contacts, plus one
  ``GET /contacts?tagid=T&ids[]=…`` per existing sync tag per page (at most 5) to fill
  ``Record.tags``; custom fields, when asked for by name, cost one call per contact.
- ``get_by_ids``: one call per 100 ids plus the tag calls; ``find_by_emails``: one per email.
- ``write``: see write.py, bulk.py (upserts) and bulk_update.py (updates by id of more than
  ``bulk_threshold`` contacts); bulk imports are also held to AC's 100 a minute.
- ``add_tags``/``remove_tags``: one read plus one call per tag actually added or removed
  (tag ids are cached; missing tags are created once).
- ``subscribe``: one read per 100 contacts (to find who unsubscribed) plus one call per contact.
- ``send_last_broadcast``: one read per 100 contacts plus one v1 ``contact_sync`` per active member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from syncd.config import HubSettings
from syncd.errors import ConfigError
from syncd.model import ObjectType, QuotaState, WriteItem, WriteOp, WriteResult
from syncd.vendors.activecampaign.answers import NAME, PLAIN, Rejected, classify, record_error
from syncd.vendors.activecampaign.bulk import import_contacts
from syncd.vendors.activecampaign.bulk_update import update_contacts
from syncd.vendors.activecampaign.imports import ImportWatcher
from syncd.vendors.activecampaign.lists import AcLists
from syncd.vendors.activecampaign.read import AcReads
from syncd.vendors.activecampaign.write import write_contacts, write_plain
from syncd.vendors.http import HttpClient, RateLimiter, RetryPolicy, StaticTokenAuth
from syncd.vendors.opportunity import to_activecampaign_deal, translate


class ActiveCampaignConnector(AcReads, AcLists):
    """`HubConnector` for ActiveCampaign: contacts, tags, lists, accounts and deals."""

    name = NAME
    supports_last_broadcast = True
    keeps_primary_companies = False
    # GET /contacts?email= takes one address; plus a tags read per found contact.
    emails_per_lookup = 1

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
        # One poller for every import in flight (imports.py).
        self.imports = ImportWatcher(
            self.call, poll_interval=import_poll_interval, timeout=import_timeout
        )
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

    async def start(self) -> None:
        """Nothing to authenticate up front: the session opens on first use."""

    async def close(self) -> None:
        """Stop waiting for imports and close the HTTP session."""
        await self.imports.close()
        await self.http.close()

    async def check_auth(self) -> None:
        """``GET /users/me``; a bad token raises AuthError."""
        await self.call("GET", "/users/me", endpoint="users.me")

    def quota(self) -> QuotaState | None:
        """AC has no daily quota, only the per-second rate limit."""
        return None

    async def set_primary_companies(self, obj: ObjectType, pairs: Mapping[str, str]) -> int:
        """Not kept here: syncd does not link ActiveCampaign contacts to accounts
        (`keeps_primary_companies` is False, so the sync never asks)."""
        raise NotImplementedError("ActiveCampaign contacts are not linked to accounts")

    async def delete(self, obj: ObjectType, ids: Sequence[str]) -> list[WriteResult]:
        """``DELETE /contacts/{id}`` (or accounts, deals), one call each: v3 has no bulk
        delete. A record that is not there (404) counts as deleted."""
        kind = PLAIN.get(obj, "contact")
        out: list[WriteResult] = []
        for rid in ids:
            try:
                await self.call("DELETE", f"/{kind}s/{rid}", endpoint=f"{kind}s.delete")
            except Rejected as exc:
                if exc.resp.status != 404:
                    out.append(record_error(exc.resp))
                    continue
            out.append(WriteResult(True, id=str(rid)))
        return out

    async def write(
        self,
        obj: ObjectType,
        op: WriteOp,
        items: Sequence[WriteItem],
        *,
        match_field: str | None = "email",
        need_ids: bool = True,
    ) -> list[WriteResult]:
        """Write records; one result per item in input order (see module doc for call costs)."""
        if obj is ObjectType.OPPORTUNITY:
            items = translate(items, to_activecampaign_deal)
        if obj in PLAIN:
            return await write_plain(self, PLAIN[obj], op, items, match_field)
        self._contacts_only(obj)
        if match_field not in (None, "email"):
            raise ConfigError(f"activecampaign matches contacts by email, not {match_field!r}")
        if op is WriteOp.UPSERT and len(items) > self.bulk_threshold:
            imported = await import_contacts(self, items, need_ids=need_ids)
            if imported is not None:
                return imported
        by_id = op is WriteOp.UPDATE and all(i.id for i in items)
        if by_id and len(items) > self.bulk_threshold and self.confirm_imports:
            return await update_contacts(self, items)
        return await write_contacts(self, op, items)
