"""The connector seams: what the engine may ask of a CRM and of a marketing hub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from syncd.model import (
    DeletedRecord,
    FieldInfo,
    ObjectType,
    Page,
    QuotaState,
    Record,
    WriteItem,
    WriteOp,
    WriteResult,
)
from syncd.rules import Rule


@dataclass(frozen=True)
class ListMembershipResult:
    """Outcome of subscribing one contact to a list."""

    contact_id: str
    ok: bool
    subscribed: bool
    message: str | None = None


@runtime_checkable
class TimeCursor(Protocol):
    """A connector whose change cursors are instants, so a read can start a while earlier.

    HubSpot's: its search finds a write seconds to a minute late, so a poll resuming exactly
    at the newest change it saw skips for good whatever was indexed late."""

    def cursor_before(self, cursor: str, seconds: float) -> str:
        """The cursor `seconds` earlier than `cursor`."""

    def later_cursor(self, a: str, b: str) -> str:
        """The later of two cursors."""


@runtime_checkable
class Connector(Protocol):
    """What every vendor connector has: a lifecycle, reads, writes and field descriptions."""

    name: str

    async def start(self) -> None:
        """Open the HTTP session (and authenticate where the vendor needs a token)."""

    async def close(self) -> None:
        """Close the HTTP session; safe to call twice."""

    async def check_auth(self) -> None:
        """Make one cheap authenticated call; raise AuthError if the credentials fail."""

    def changed_since(
        self,
        obj: ObjectType,
        cursor: str | None,
        *,
        fields: Sequence[str] = (),
        criteria: Rule | None = None,
    ) -> AsyncIterator[Page]:
        """Pages of records changed after `cursor` (oldest first), each with its resume cursor."""

    async def get_by_ids(
        self, obj: ObjectType, ids: Sequence[str], *, fields: Sequence[str] = ()
    ) -> list[Record]:
        """The current state of the given records (missing ones are left out)."""

    async def deleted_since(
        self, obj: ObjectType, cursor: str | None
    ) -> tuple[list[DeletedRecord], str | None]:
        """Records deleted after `cursor`, and the cursor to use next time."""

    async def write(
        self,
        obj: ObjectType,
        op: WriteOp,
        items: Sequence[WriteItem],
        *,
        match_field: str | None = None,
    ) -> list[WriteResult]:
        """Write records in vendor-sized batches; one result per item, in input order."""

    async def delete(self, obj: ObjectType, ids: Sequence[str]) -> list[WriteResult]:
        """Delete records in vendor-sized batches; one result per id, in input order. A
        record that is already gone counts as deleted."""

    async def describe(self, obj: ObjectType) -> list[FieldInfo]:
        """The fields of an object: names, types and whether creating requires them."""

    def quota(self) -> QuotaState | None:
        """Daily API quota as last reported by the vendor, if it reports one."""


@runtime_checkable
class CrmConnector(Connector, Protocol):
    """A sales CRM (Salesforce)."""


@runtime_checkable
class HubConnector(Connector, Protocol):
    """A marketing hub (ActiveCampaign, HubSpot)."""

    supports_last_broadcast: bool
    # Whether the hub links contacts and deals to a primary company (HubSpot does; syncd
    # does not link ActiveCampaign contacts to accounts).
    keeps_primary_companies: bool
    # Emails one `find_by_emails` call looks up (what a dbsync test --exact costs).
    emails_per_lookup: int

    async def write(
        self,
        obj: ObjectType,
        op: WriteOp,
        items: Sequence[WriteItem],
        *,
        match_field: str | None = None,
        need_ids: bool = True,
    ) -> list[WriteResult]:
        """As `Connector.write`. With `need_ids` False the caller needs of each contact only
        whether the write created it: a hub that learns ids by reading them back
        (ActiveCampaign's bulk import) may answer id None instead of spending those reads."""

    async def find_by_emails(self, emails: Sequence[str]) -> dict[str, Record]:
        """Existing contacts by lower-cased, trimmed email."""

    async def add_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        """Add sync tags to a contact (tags on AC, a multi-checkbox property on HubSpot)."""

    async def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        """Remove sync tags from a contact."""

    async def get_tags(self, contact_id: str) -> frozenset[str]:
        """The sync tags a contact carries."""

    async def subscribe(
        self, list_id: str, contact_ids: Sequence[str]
    ) -> list[ListMembershipResult]:
        """Add contacts to a list; a contact that unsubscribed stays unsubscribed."""

    async def remove_from_list(self, list_id: str, contact_ids: Sequence[str]) -> list[str]:
        """Take contacts off a list (dbsync delete_missing); the ids this call took off
        (not those that were not on it, nor those who had unsubscribed themselves)."""

    async def restore_to_list(self, list_id: str, contact_ids: Sequence[str]) -> None:
        """Put back on a list contacts `remove_from_list` took off, whatever their status on
        it now (syncd set it); contacts who opted out of all email stay out."""

    async def send_last_broadcast(self, list_id: str, contact_ids: Sequence[str]) -> None:
        """Send the list's last campaign to new contacts, where the hub supports it."""

    async def set_primary_companies(self, obj: ObjectType, pairs: Mapping[str, str]) -> int:
        """Point each contact's or deal's primary company at the one given (hub ids), where
        the hub keeps them (`keeps_primary_companies`); how many changed."""
