"""Prometheus metric objects; every name starts with ``syncd_`` and follows the naming rules."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram, Info

from syncd import __version__

BUILD_INFO = Info("syncd_build", "Version of the running syncd")
BUILD_INFO.info({"version": __version__})

UP_SINCE = Gauge("syncd_up_since_timestamp_seconds", "Unix time the daemon started")
UP_SINCE.set(time.time())

CONFIG_RELOADS = Counter(
    "syncd_config_reloads_total", "Configuration reloads by outcome", ["outcome"]
)
CONFIG_PROBLEMS = Counter(
    "syncd_config_problems_total", "Problems found in rejected configuration reloads"
)
STORE_ERRORS = Counter("syncd_store_errors_total", "State store operations that failed", ["op"])
QUEUE_ENTRIES = Gauge(
    "syncd_queue_entries", "Queue entries by direction and status", ["direction", "status"]
)
HTTP_REQUESTS = Counter(
    "syncd_http_requests_total", "HTTP requests served, by route and status code", ["route", "code"]
)
PAGE_LOGINS = Counter(
    "syncd_page_logins_total",
    "Sign-ins to the overview page by outcome (ok, wrong, throttled)",
    ["outcome"],
)
HTTP_DURATION = Histogram(
    "syncd_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

API_REQUESTS = Counter(
    "syncd_api_requests_total",
    "Calls to vendor APIs by connector, endpoint group and outcome",
    ["connector", "endpoint", "outcome"],
)
API_DURATION = Histogram(
    "syncd_api_request_duration_seconds",
    "Duration of vendor API calls",
    ["connector"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
API_QUOTA_USED = Gauge(
    "syncd_api_quota_used", "Daily API calls used as reported by the vendor", ["connector"]
)
API_QUOTA_LIMIT = Gauge(
    "syncd_api_quota_limit", "Daily API call limit as reported by the vendor", ["connector"]
)
API_RETRIES = Counter(
    "syncd_api_retries_total", "Vendor API calls retried, by reason", ["connector", "reason"]
)
API_REAUTH = Counter("syncd_api_reauth_total", "Re-authentications after 401", ["connector"])

INTEGRATION_ERROR_ACTIVE = Gauge(
    "syncd_integration_error_active",
    "1 while an integration-wide error pauses a direction",
    ["direction", "category"],
)

CHANGES_RECEIVED = Counter(
    "syncd_changes_received_total", "Changes accepted into the queue by source", ["source"]
)
INBOUND_PENDING = Gauge("syncd_inbound_pending", "Inbound changes waiting for a flush", ["object"])
FLUSHES = Counter("syncd_flushes_total", "Inbound flushes by trigger", ["trigger"])
RECORDS = Counter(
    "syncd_records_total",
    "Records handled by direction, object and result",
    ["direction", "object", "result"],
)
LAST_SUCCESS = Gauge(
    "syncd_last_success_timestamp_seconds", "Unix time a job last succeeded", ["job"]
)
FLUSH_DURATION = Histogram(
    "syncd_flush_duration_seconds",
    "Duration of inbound flushes",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
PULL_DURATION = Histogram(
    "syncd_pull_duration_seconds",
    "Duration of outbound pulls",
    ["object"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
LEASES_LOST = Counter(
    "syncd_leases_lost_total",
    "Claimed entries not written because their lease ran out or was taken by another"
    " instance before the vendor write (the fencing check); they are sent by their new"
    " claimer",
    ["direction"],
)
DBSYNC_ROWS = Counter(
    "syncd_dbsync_rows_total", "Rows handled by dbsync, by name and result", ["dbsync", "result"]
)
