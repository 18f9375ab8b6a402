"""Opportunities reach the hubs with the fixed neutral fields name, amount, stage, close_date.

Each hub names them its own way; these translations keep the engine vendor-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from syncd.model import WriteItem

NEUTRAL = ("name", "amount", "stage", "close_date")


def _cents(value: Any) -> int | None:
    try:
        return int((Decimal(str(value)) * 100).to_integral_value())
    except (InvalidOperation, ValueError):
        return None


def to_activecampaign_deal(fields: Mapping[str, Any], currency: str = "usd") -> dict[str, Any]:
    """ActiveCampaign deal: title, value in cents, currency.

    AC stages are ids of its pipeline stages: a numeric stage is passed as one; a CRM stage
    name (and the close date, which deals lack) is kept readable in the description.
    """
    out: dict[str, Any] = {k: v for k, v in fields.items() if k not in NEUTRAL}
    stage = fields.get("stage")
    if stage is not None and str(stage).isdigit():
        out["stage"] = str(stage)
    if "name" in fields:
        out["title"] = fields["name"]
    if fields.get("amount") is not None:
        cents = _cents(fields["amount"])
        if cents is not None:
            out["value"] = cents
            out["currency"] = currency
    details = [
        f"{k}: {fields[k]}"
        for k in ("stage", "close_date")
        if fields.get(k) and not (k == "stage" and str(fields[k]).isdigit())
    ]
    if details:
        out["description"] = "; ".join(details)
    return out


def to_hubspot_deal(fields: Mapping[str, Any]) -> dict[str, Any]:
    """HubSpot deal properties: dealname, amount, dealstage, closedate."""
    names = {
        "name": "dealname",
        "amount": "amount",
        "stage": "dealstage",
        "close_date": "closedate",
    }
    return {names.get(k, k): v for k, v in fields.items()}


def translate(items: Sequence[WriteItem], fn: Any) -> list[WriteItem]:
    """The same items with their fields translated by `fn`."""
    return [WriteItem(fn(i.fields), id=i.id) for i in items]
