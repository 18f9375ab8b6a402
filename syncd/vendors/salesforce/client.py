"""The Salesforce connector: SOQL pulls, deleted records, sObject Collections writes, describe.

All calls go through the shared `HttpClient` (retries, Retry-After, re-auth on 401); this
package adds the vendor's error classification (answers.py), API-quota tracking from
``Sforce-Limit-Info`` and per-record mapping of collection results (write.py).
"""

from __future__ import annotations

from syncd.config import CrmSettings
from syncd.model import FieldInfo, ObjectType, QuotaState
from syncd.vendors.http import HttpClient, HttpResponse, QuotaGuard, RateLimiter, RetryPolicy
from syncd.vendors.salesforce.answers import classify, limit_info
from syncd.vendors.salesforce.auth import SalesforceAuth
from syncd.vendors.salesforce.read import SalesforceReads
from syncd.vendors.salesforce.write import LOCK_RETRIES, SalesforceWrites


class SalesforceConnector(SalesforceReads, SalesforceWrites):
    """`CrmConnector` for the Salesforce REST API."""

    name = "salesforce"

    def __init__(
        self,
        settings: CrmSettings,
        *,
        rate_limiter: RateLimiter | None = None,
        lock_retries: int = LOCK_RETRIES,
    ) -> None:
        self.settings = settings
        self.auth = SalesforceAuth(settings)
        self.guard = QuotaGuard(self.name, reserve=settings.quota_reserve)
        h = settings.http
        self.http = HttpClient(
            self.name,
            auth=self.auth,
            classify=classify,
            rate_limiter=rate_limiter,
            retry=RetryPolicy(h.retry_attempts, h.retry_base_delay, h.retry_max_delay),
            connect_timeout=h.connect_timeout,
            read_timeout=h.read_timeout,
            on_response=self._on_response,
        )
        self.lock_retries = lock_retries
        self._describe: dict[ObjectType, list[FieldInfo]] = {}

    async def start(self) -> None:
        """Open the session and authenticate (raises AuthError when rejected)."""
        await self.auth.headers(self.http.session)

    async def close(self) -> None:
        """Close the HTTP session; safe to call twice."""
        await self.http.close()

    async def check_auth(self) -> None:
        """One cheap authenticated call (the org's limits)."""
        await self._get("/limits", endpoint="limits")

    def quota(self) -> QuotaState | None:
        """Daily API usage as last reported in ``Sforce-Limit-Info``."""
        return self.guard.state

    def _on_response(self, resp: HttpResponse) -> None:
        used, limit = limit_info(resp)
        if used is not None and limit is not None:
            self.guard.update(used, limit)
