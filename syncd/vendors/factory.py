"""Builds the configured connectors; the only place that maps config kinds to vendors."""

from __future__ import annotations

from syncd.config import HubSettings, Settings
from syncd.errors import ConfigError
from syncd.vendors.protocols import CrmConnector, HubConnector


def build_hub(hub: HubSettings) -> HubConnector:
    """The hub connector for ``hub.kind``."""
    if hub.kind == "activecampaign":
        from syncd.vendors.activecampaign.client import ActiveCampaignConnector

        bulk = hub.bulk_rate_limit
        rate = (bulk.requests, bulk.per_seconds) if bulk else (100, 60.0)
        return ActiveCampaignConnector(hub, bulk_rate=rate)
    from syncd.vendors.hubspot.client import HubSpotConnector

    return HubSpotConnector(hub)


def build_connectors(settings: Settings) -> tuple[CrmConnector, HubConnector]:
    """The CRM and hub connectors of a configuration with both sections."""
    if settings.crm is None or settings.hub is None:
        raise ConfigError("both [crm] and [hub] sections are needed to sync")
    from syncd.vendors.salesforce.client import SalesforceConnector

    return SalesforceConnector(settings.crm), build_hub(settings.hub)
