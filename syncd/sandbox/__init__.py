"""Faithful local simulators of the Salesforce, ActiveCampaign and HubSpot APIs."""
