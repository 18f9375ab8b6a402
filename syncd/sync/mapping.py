"""Field mapping between hub and CRM, with transforms and pre-send validation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from syncd.config import ObjectSyncSettings
from syncd.emails import is_valid_email
from syncd.errors import RecordError
from syncd.model import ErrorCategory, ObjectType
from syncd.store.types import RecordLink

_TRANSFORMS: dict[str, Callable[[str], str]] = {
    "lower": str.lower,
    "upper": str.upper,
    "strip": str.strip,
    "title": str.title,
}

# Opportunities go one way with a fixed mapping; hub connectors receive these neutral names.
OPPORTUNITY_FIELDS = {
    "Name": "name",
    "Amount": "amount",
    "StageName": "stage",
    "CloseDate": "close_date",
}


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@dataclass(frozen=True)
class ObjectMapping:
    """How one object's fields cross: hub field -> CRM field, transforms, required hub fields."""

    object: ObjectType
    hub_to_crm: Mapping[str, str]
    transforms: Mapping[str, str]
    required: tuple[str, ...]

    @classmethod
    def from_settings(cls, obj: ObjectType, s: ObjectSyncSettings) -> ObjectMapping:
        """Build from an object's sync settings (opportunities use the fixed mapping)."""
        if obj is ObjectType.OPPORTUNITY:
            return cls(obj, {v: k for k, v in OPPORTUNITY_FIELDS.items()}, {}, ())
        return cls(obj, dict(s.mapping), dict(s.transforms), tuple(s.required))

    @property
    def crm_fields(self) -> list[str]:
        """CRM field names this mapping reads or writes."""
        return list(self.hub_to_crm.values())

    @property
    def crm_to_hub(self) -> dict[str, str]:
        """The reverse mapping."""
        return {c: h for h, c in self.hub_to_crm.items()}

    def _apply(self, hub_field: str, value: Any) -> Any:
        name = self.transforms.get(hub_field)
        if name and isinstance(value, str):
            return _TRANSFORMS[name](value)
        return value

    def to_crm(self, hub_fields: Mapping[str, Any], only: set[str] | None = None) -> dict[str, Any]:
        """CRM field -> value for the mapped hub fields present (restricted to `only`)."""
        out: dict[str, Any] = {}
        for hub_field, crm_field in self.hub_to_crm.items():
            if hub_field in hub_fields and (only is None or hub_field in only):
                out[crm_field] = self._apply(hub_field, hub_fields[hub_field])
        return out

    @cached_property
    def _to_hub_plan(self) -> tuple[tuple[str, str, Callable[[str], str] | None], ...]:
        # Built once per mapping: to_hub runs per record of every pull.
        return tuple(
            (c, h, _TRANSFORMS[self.transforms[h]] if self.transforms.get(h) else None)
            for c, h in self.crm_to_hub.items()
        )

    def to_hub(self, crm_fields: Mapping[str, Any]) -> dict[str, Any]:
        """Hub field -> value for the mapped CRM fields present."""
        out: dict[str, Any] = {}
        for crm_field, hub_field, transform in self._to_hub_plan:
            if crm_field in crm_fields:
                value = crm_fields[crm_field]
                out[hub_field] = transform(value) if transform and isinstance(value, str) else value
        return out

    def validate_hub(self, hub_fields: Mapping[str, Any], *, creating: bool) -> None:
        """Raise RecordError(validation) for a missing required field or an invalid email."""
        if creating:
            for name in self.required:
                if _empty(hub_fields.get(name)):
                    raise RecordError(
                        ErrorCategory.VALIDATION,
                        "REQUIRED_FIELD_MISSING",
                        f"required field {name!r} (-> {self.hub_to_crm.get(name, '?')}) is empty",
                    )
        email = hub_fields.get("email")
        if "email" in self.hub_to_crm and not _empty(email) and not is_valid_email(email):
            raise RecordError(
                ErrorCategory.VALIDATION, "INVALID_EMAIL", f"email {email!r} is not a valid address"
            )


def stored_base(link: RecordLink | None, mapping: ObjectMapping) -> dict[str, Any]:
    """A link's base in CRM field names: what both sides last agreed on (empty: nothing yet).

    A base seeded by the store migration is the last entry's `transferred` as it was
    sent: CRM names for an inbound entry, hub names for an outbound one (`base_origin`)."""
    if link is None or link.base is None:
        return {}
    if link.base_origin is None:
        return dict(link.base)
    sent = link.base.get("fields")
    if not isinstance(sent, dict):
        return {}
    if link.base_origin == "outbound":
        return mapping.to_crm(sent)
    return {f: sent[f] for f in mapping.crm_fields if f in sent}
