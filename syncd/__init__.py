"""syncd: a self-hosted sync daemon between a marketing hub and Salesforce."""

__version__ = "0.1.0"
