"""HubSpot sync tags: values of one multi-checkbox contact property (``tag_property``).

HubSpot refuses a value the property does not offer, so options are added (and the
property created) before a tag is first written; the options known are kept, so that
costs a call only when a new tag appears.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from syncd.vendors.hubspot.answers import Rejected, split_tags
from syncd.vendors.hubspot.base import HubSpotBase


class HubSpotTags(HubSpotBase):
    """The tag methods of `HubConnector`, and the tag property's options."""

    _tag_options: set[str] | None

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


def _option(value: str, order: int) -> dict[str, Any]:
    return {"label": value, "value": value, "displayOrder": order, "hidden": False}
