"""What every part of the ActiveCampaign connector calls through.

The connector is assembled from mixins (reads, tags, lists) so that each vendor concern is
read on its own; they share one HTTP client and one v3 base URL, declared and used here.
"""

from __future__ import annotations

from typing import Any

from syncd.errors import ConfigError
from syncd.model import ObjectType
from syncd.vendors.activecampaign.answers import PLAIN
from syncd.vendors.http import HttpClient, HttpResponse


class AcBase:
    """The HTTP client and the v3 calls; `ActiveCampaignConnector.__init__` sets them up."""

    http: HttpClient
    _base: str

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

    @staticmethod
    def _contacts_only(obj: ObjectType) -> None:
        if obj not in (ObjectType.CONTACT, *PLAIN):
            raise ConfigError(f"activecampaign has no {obj.value} records; map it to contact")
