"""The HubSpot simulator's property definitions: the shape and a fresh portal's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

OPTOUT_PROPERTY = "hs_email_optout"


def _iso_epoch() -> str:
    return datetime.fromtimestamp(0, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class PropertyDef:
    """One property definition, as ``GET /crm/v3/properties/{object}`` lists it."""

    name: str
    label: str
    type: str = "string"  # string | number | datetime | date | enumeration | bool
    field_type: str = "text"
    group: str = "contactinformation"
    options: list[dict[str, Any]] = field(default_factory=list)
    read_only: bool = False
    unique: bool = False
    calculated: bool = False

    def to_json(self, object_type: str) -> dict[str, Any]:
        """The API shape."""
        stamp = _iso_epoch()
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "description": "",
            "groupName": self.group,
            "options": [dict(o) for o in self.options],
            "displayOrder": -1,
            "calculated": self.calculated,
            "externalOptions": False,
            "hasUniqueValue": self.unique,
            "hidden": False,
            "hubspotDefined": not self.name.startswith("syncd_"),
            "modificationMetadata": {
                "archivable": True,
                "readOnlyDefinition": not self.name.startswith("syncd_"),
                "readOnlyValue": self.read_only,
            },
            "formField": not self.read_only,
            "createdAt": stamp,
            "updatedAt": stamp,
            "archived": False,
            "dataSensitivity": "non_sensitive",
            "objectType": object_type,
        }


def _prop(name: str, label: str, kind: str = "string", **kw: Any) -> PropertyDef:
    field_type = {"number": "number", "datetime": "date", "date": "date", "bool": "booleancheckbox"}
    return PropertyDef(name, label, kind, kw.pop("field_type", field_type.get(kind, "text")), **kw)


def default_properties(tag_property: str) -> dict[str, dict[str, PropertyDef]]:
    """The property definitions a fresh portal has (a useful subset of HubSpot's)."""
    common = [
        _prop("hs_object_id", "Record ID", "number", read_only=True, unique=True),
        _prop("createdate", "Create Date", "datetime", read_only=True),
    ]
    contacts = [
        *common,
        _prop("lastmodifieddate", "Last Modified Date", "datetime", read_only=True),
        _prop("email", "Email", unique=True),
        *(
            _prop(n, label)
            for n, label in (
                ("firstname", "First Name"),
                ("lastname", "Last Name"),
                ("phone", "Phone Number"),
                ("mobilephone", "Mobile Phone Number"),
                ("company", "Company Name"),
                ("jobtitle", "Job Title"),
                ("website", "Website URL"),
                ("address", "Street Address"),
                ("city", "City"),
                ("state", "State/Region"),
                ("zip", "Postal Code"),
                ("country", "Country/Region"),
                ("salesforceleadid", "Salesforce Lead ID"),
                ("salesforcecontactid", "Salesforce Contact ID"),
            )
        ),
        _prop(
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            field_type="radio",
            options=[
                option(v)
                for v in ("subscriber", "lead", "marketingqualifiedlead", "opportunity", "customer")
            ],
        ),
        _prop(OPTOUT_PROPERTY, "Unsubscribed from all email", "bool"),
        _prop(
            tag_property,
            "Sync tags",
            "enumeration",
            field_type="checkbox",
            options=[],
        ),
    ]
    companies = [
        *common,
        _prop("hs_lastmodifieddate", "Last Modified Date", "datetime", read_only=True),
        *(
            _prop(n, label, group="companyinformation")
            for n, label in (
                ("name", "Company name"),
                ("domain", "Company Domain Name"),
                ("phone", "Phone Number"),
                ("website", "Website URL"),
                ("industry", "Industry"),
                ("city", "City"),
                ("state", "State/Region"),
                ("country", "Country/Region"),
                ("salesforceaccountid", "Salesforce Account ID"),
            )
        ),
        _prop("numberofemployees", "Number of Employees", "number", group="companyinformation"),
        _prop("annualrevenue", "Annual Revenue", "number", group="companyinformation"),
    ]
    deals = [
        *common,
        _prop("hs_lastmodifieddate", "Last Modified Date", "datetime", read_only=True),
        _prop("dealname", "Deal Name", group="dealinformation"),
        _prop("amount", "Amount", "number", group="dealinformation"),
        _prop("dealstage", "Deal Stage", group="dealinformation"),
        _prop("pipeline", "Pipeline", group="dealinformation"),
        _prop("closedate", "Close Date", "datetime", group="dealinformation"),
        _prop("salesforceopportunityid", "Salesforce Opportunity ID", group="dealinformation"),
    ]
    return {
        "contacts": {p.name: p for p in contacts},
        "companies": {p.name: p for p in companies},
        "deals": {p.name: p for p in deals},
    }


def option(value: str, order: int = 0) -> dict[str, Any]:
    """An enumeration option whose label is its value."""
    return {"label": value, "value": value, "displayOrder": order, "hidden": False}
