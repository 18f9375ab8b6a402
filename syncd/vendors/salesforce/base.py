"""What every part of the Salesforce connector calls through.

The connector is assembled from mixins (reads, writes) so that each is read on its own;
they share one HTTP client and the instance URL the login answered with, declared and
used here.
"""

from __future__ import annotations

from typing import Any

from syncd.config import CrmSettings
from syncd.vendors.http import HttpClient
from syncd.vendors.salesforce.auth import SalesforceAuth


class SalesforceBase:
    """The HTTP client and the REST calls; `SalesforceConnector.__init__` sets them up."""

    settings: CrmSettings
    auth: SalesforceAuth
    http: HttpClient

    async def _url(self, path: str) -> str:
        await self.auth.headers(self.http.session)
        assert self.auth.instance_url is not None
        if path.startswith("/services/"):
            return self.auth.instance_url + path
        return f"{self.auth.instance_url}/services/data/v{self.settings.api_version}{path}"

    async def _get(self, path: str, *, endpoint: str, params: dict[str, str] | None = None) -> Any:
        resp = await self.http.request(
            "GET", await self._url(path), endpoint=endpoint, params=params
        )
        return resp.json()
