"""HubSpot lists: memberships of manual lists.

A list membership call adds whoever it names, so contacts that opted out of email are
found first and left out; HubSpot cannot send a past campaign to new members.
"""

from __future__ import annotations

from collections.abc import Sequence

from syncd.errors import ConfigError
from syncd.vendors.hubspot.answers import NAME, OPTOUT, chunks
from syncd.vendors.hubspot.base import HubSpotBase
from syncd.vendors.protocols import ListMembershipResult

MEMBERSHIP_CHUNK = 1000


class HubSpotLists(HubSpotBase):
    """The list methods of `HubConnector`."""

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

    async def remove_from_list(self, list_id: str, contact_ids: Sequence[str]) -> list[str]:
        """Take contacts off a manual list; HubSpot answers which it removed
        (``recordIdsRemoved``; ``recordIdsMissing`` were not members)."""
        ids = [str(c) for c in dict.fromkeys(contact_ids)]
        removed: list[str] = []
        for chunk in chunks(ids, MEMBERSHIP_CHUNK):
            self.check_write_quota()
            resp = await self.call(
                "PUT",
                f"/crm/v3/lists/{list_id}/memberships/remove",
                endpoint="lists.memberships.remove",
                json_body=list(chunk),
            )
            removed += [str(r) for r in (resp.json() or {}).get("recordIdsRemoved") or []]
        return removed

    async def restore_to_list(self, list_id: str, contact_ids: Sequence[str]) -> None:
        """Membership is all a HubSpot list has: adding them again is `subscribe` (those who
        opted out of email stay out)."""
        await self.subscribe(list_id, contact_ids)

    async def send_last_broadcast(self, list_id: str, contact_ids: Sequence[str]) -> None:
        """Not available: HubSpot's public API cannot send a past marketing email to new members."""
        raise ConfigError(
            f"{NAME}: sending a list's last campaign is not supported: HubSpot's public API "
            "has no call to send an already-sent marketing email to new list members; turn "
            "send_last_broadcast off for this list (or use a HubSpot workflow on list entry)"
        )
