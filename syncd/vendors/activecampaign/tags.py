"""ActiveCampaign tags: the sync tags a contact carries, read and changed by tag id.

AC addresses tags by id and a contact's tags by ``contactTag`` id, so tag names are
resolved once and kept; a sync tag the AC account lacks is remembered as missing for a
while, so that reads do not search for it again on every page.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from syncd.errors import RecordError
from syncd.model import ALL_SYNC_TAGS, ErrorCategory
from syncd.vendors.activecampaign.answers import PAGE, Rejected, vendor_message
from syncd.vendors.activecampaign.base import AcBase

MISSING_TAG_TTL = 300.0


class AcTags(AcBase):
    """Tag lookups and the tag methods of `HubConnector`."""

    _tag_ids: dict[str, str]
    _missing_tags: dict[str, float]

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
        tag_ids = {t: await self._tag_id(t, create=False) for t in sorted(ALL_SYNC_TAGS)}
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
        for tag in ALL_SYNC_TAGS:
            tid = await self._tag_id(tag, create=False)
            if tid is not None and tid in have:
                out.add(tag)
        return frozenset(out)
