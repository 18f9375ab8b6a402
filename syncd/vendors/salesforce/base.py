"""What every part of the Salesforce connector calls through.

The connector is assembled from mixins (reads, writes) so that each is read on its own;
they share one HTTP client and the instance URL the login answered with, declared and
used here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
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

    async def _query(
        self, soql: str, *, with_deleted: bool = False
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Each page of a SOQL query's records, following ``nextRecordsUrl``."""
        # queryAll also answers for deleted records still in the recycle bin.
        path = "/queryAll" if with_deleted else "/query"
        body = await self._get(path, endpoint=path[1:], params={"q": soql})
        while True:
            yield list(body.get("records", []))
            nxt = body.get("nextRecordsUrl")
            if body.get("done", True) or not nxt:
                return
            body = await self._get(str(nxt), endpoint="query_more")
