"""What every part of the HubSpot connector calls through.

The connector is assembled from mixins (reads, tags, lists) so that each vendor concern is
read on its own; they share one HTTP client, the separate pace of searches, the daily quota
and the tag property, declared and used here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from syncd.vendors.http import HttpClient, HttpResponse, QuotaGuard, RateLimiter
from syncd.vendors.hubspot.answers import BATCH, chunks


class HubSpotBase:
    """The HTTP client and the calls made through it; `HubSpotConnector.__init__` sets them up."""

    http: HttpClient
    _base: str
    tag_property: str
    quota_guard: QuotaGuard
    search_limiter: RateLimiter

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
