"""One HubSpot CRM record as the simulator keeps it: shared by its state and its search
index (which holds the versions search still shows)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HsObject:
    """One CRM record."""

    id: str
    properties: dict[str, str | None]
    created_ms: int
    updated_ms: int
    archived: bool = False
    archived_ms: int | None = None
