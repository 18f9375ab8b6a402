"""ActiveCampaign lists: subscribing contacts, taking them off, sending the last campaign.

A contact's status on a list is 1 (active) or 2 (unsubscribed); AC sets whatever it is
told, so the status is read first: someone who unsubscribed is never subscribed again.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from pydantic import SecretStr

from syncd.errors import AuthError
from syncd.vendors.activecampaign.answers import NAME, PAGE, Rejected, vendor_message
from syncd.vendors.activecampaign.base import AcBase
from syncd.vendors.protocols import ListMembershipResult

log = structlog.get_logger(__name__)


class AcLists(AcBase):
    """The list methods of `HubConnector`."""

    _v1_url: str
    _token: SecretStr

    async def _members(self, list_id: str, ids: Sequence[str], status: int) -> dict[str, str]:
        """id -> email of the given contacts having `status` on the list."""
        out: dict[str, str] = {}
        for start in range(0, len(ids), PAGE):
            chunk = ids[start : start + PAGE]
            params = [("listid", list_id), ("status", str(status)), ("limit", str(PAGE))]
            params += [("ids[]", c) for c in chunk]
            body = await self.call("GET", "/contacts", endpoint="contacts.by_list", params=params)
            for row in body.get("contacts") or []:
                out[str(row["id"])] = str(row.get("email", ""))
        return out

    async def _set_status(self, list_id: str, contact_id: str, status: int) -> str | None:
        try:
            await self.call(
                "POST",
                "/contactLists",
                endpoint="contactLists.set",
                json_body={
                    "contactList": {"list": list_id, "contact": contact_id, "status": status}
                },
            )
        except Rejected as exc:
            return vendor_message(exc.resp)
        return None

    async def subscribe(
        self, list_id: str, contact_ids: Sequence[str]
    ) -> list[ListMembershipResult]:
        """Subscribe contacts; anyone who unsubscribed from the list stays unsubscribed."""
        ids = list(dict.fromkeys(str(c) for c in contact_ids))
        unsubscribed = await self._members(list_id, ids, 2)
        out = []
        for cid in ids:
            if cid in unsubscribed:
                out.append(ListMembershipResult(cid, True, False, "unsubscribed; left as is"))
                continue
            problem = await self._set_status(list_id, cid, 1)
            out.append(ListMembershipResult(cid, problem is None, problem is None, problem))
        by_id = {r.contact_id: r for r in out}
        return [by_id[str(c)] for c in contact_ids]

    async def remove_from_list(self, list_id: str, contact_ids: Sequence[str]) -> list[str]:
        """AC takes a contact off a list by unsubscribing it (status 2). Only active members
        are: someone who unsubscribed on their own is not reported as taken off (so that
        `restore_to_list` never subscribes them again)."""
        ids = list(dict.fromkeys(str(c) for c in contact_ids))
        active = await self._members(list_id, ids, 1)
        out = []
        for cid in ids:
            if cid in active and await self._set_status(list_id, cid, 2) is None:
                out.append(cid)
        return out

    async def restore_to_list(self, list_id: str, contact_ids: Sequence[str]) -> None:
        """Status 1 again for contacts syncd unsubscribed (an import or ``subscribe`` leaves
        an unsubscribed contact as it is, so it is set here directly)."""
        for cid in dict.fromkeys(str(c) for c in contact_ids):
            problem = await self._set_status(list_id, cid, 1)
            if problem is not None:
                log.warning("restore_to_list_failed", contact_id=cid, message=problem)

    async def send_last_broadcast(self, list_id: str, contact_ids: Sequence[str]) -> None:
        """Send the list's last campaign to active members, via API v1 ``lastmessage[L]``.

        v3 has no such call; v1 ``contact_sync`` with ``p[L]``, ``status[L]=1`` and
        ``lastmessage[L]=1`` does it. Only contacts active on the list are sent to, so the
        v1 call never re-subscribes anyone.
        """
        active = await self._members(list_id, list(dict.fromkeys(map(str, contact_ids))), 1)
        for cid, email in active.items():
            resp = await self.http.request(
                "POST",
                self._v1_url,
                endpoint="v1.contact_sync",
                params={
                    "api_action": "contact_sync",
                    "api_output": "json",
                    "api_key": self._token.get_secret_value(),
                },
                data={
                    "email": email,
                    f"p[{list_id}]": list_id,
                    f"status[{list_id}]": "1",
                    f"lastmessage[{list_id}]": "1",
                },
            )
            body = resp.json() or {}
            if str(body.get("result_code")) != "1":
                message = str(body.get("result_message", ""))
                if "not authorized" in message.lower():
                    raise AuthError(f"{NAME}: API v1 rejected the token: {message}")
                log.warning("last_broadcast_failed", contact_id=cid, message=message)
