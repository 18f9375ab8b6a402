"""Vendor connectors behind the CrmConnector and HubConnector protocols."""
