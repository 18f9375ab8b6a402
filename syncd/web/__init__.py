"""The HTTP surface: health, metrics, webhooks and the admin API."""
