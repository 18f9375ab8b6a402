"""Typed exceptions: each one says what the caller can do about it."""

from __future__ import annotations

from dataclasses import dataclass

from syncd.model import ErrorCategory


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""


class StoreError(SyncdError):
    """The state store failed; the operation was not (or not fully) committed: retry later."""


class StoreUnusable(StoreError):
    """The store exists but is not a usable syncd store (emptied, truncated, another file):
    retrying cannot help and starting afresh would lose what it held. An operator must look
    (restore a backup, or move the file away to start a new store)."""


class IntegrationError(SyncdError):
    """An error that affects a whole direction, not one record: pause and retry later."""

    category: ErrorCategory = ErrorCategory.TRANSIENT


class AuthError(IntegrationError):
    """Credentials are missing, expired beyond refresh or revoked: an operator must reconnect."""

    category = ErrorCategory.AUTH


class QuotaExhausted(IntegrationError):
    """The vendor's (or our reserved share of the) daily API quota is spent until it resets."""

    category = ErrorCategory.QUOTA

    def __init__(self, message: str, *, used: int | None = None, limit: int | None = None) -> None:
        super().__init__(message)
        self.used = used
        self.limit = limit


class ConfigError(IntegrationError):
    """The configuration does not match the remote system (e.g. a mapped field is missing)."""

    category = ErrorCategory.MAPPING


class TransientError(IntegrationError):
    """A network error, timeout or 5xx that outlived the retries: try again later."""

    category = ErrorCategory.TRANSIENT


class RateLimited(TransientError):
    """The vendor asked us to slow down; do not call again before `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestRejected(SyncdError):
    """The vendor refused one request (a 4xx nobody classified): retrying it will not help."""

    def __init__(self, message: str, *, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class RecordError(SyncdError):
    """One record was rejected; the others in its batch are unaffected."""

    category: ErrorCategory
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.category.value}: {self.code}: {self.message}"
