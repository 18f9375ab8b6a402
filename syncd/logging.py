"""structlog setup: JSON lines (or console), with every configured secret redacted everywhere."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError

REDACTED = "***"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


class SecretRedactor:
    """A structlog processor replacing each known secret, wherever it appears, with ***.

    Runs after exceptions are rendered, so tracebacks are covered too.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Replace the set of secrets (on reload); longest first so overlaps redact fully."""
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """`text` with every secret replaced."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self.secrets:
            return event_dict
        for key, value in list(event_dict.items()):
            event_dict[key] = self._scrub(value)
        return event_dict

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.redact(str(value))


REDACTOR = SecretRedactor()


def _render_exc(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    exc = event_dict.pop("exc_info", None)
    if exc:
        if exc is True:
            exc = sys.exc_info()
        elif isinstance(exc, BaseException):
            exc = (type(exc), exc, exc.__traceback__)
        event_dict["exception"] = "".join(traceback.format_exception(*exc))
    return event_dict


def configure_logging(
    level: str = "info",
    fmt: str = "json",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the stdlib root logger; callable again on reload."""
    REDACTOR.update(secrets)
    out = stream or sys.stderr
    renderer: Any
    if fmt == "console" or (fmt != "json" and out.isatty()):
        # Tracebacks arrive already formatted (and redacted) by _render_exc.
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        _default_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _render_exc,
        REDACTOR,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through stdlib (aiohttp, apscheduler) go through the same redaction.
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_ToStructlog())
    root.setLevel(max(_LEVELS.get(level, logging.INFO), logging.INFO))
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    if _client_fault not in server.filters:
        server.addFilter(_client_fault)


def _client_fault(record: logging.LogRecord) -> bool:
    """A request aiohttp could not parse (a bad header byte, a lying length) is the client's
    fault, answered 400: one warning line naming it, not an error with a traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError) and exc.code < 500:
        record.msg, record.args = "malformed HTTP request: %s", (exc.message,)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
    return True


def _default_logger_name(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    name = event_dict.pop("logger_name", None)
    event_dict.setdefault("logger", name or "syncd")
    return event_dict


class _ToStructlog(logging.Handler):
    """Forwards stdlib log records into structlog (and so through the redactor)."""

    def emit(self, record: logging.LogRecord) -> None:
        log = structlog.get_logger(logger_name=record.name)
        kwargs: dict[str, Any] = {}
        if record.exc_info:
            kwargs["exc_info"] = record.exc_info
        try:
            log.log(record.levelno, record.getMessage(), **kwargs)
        except Exception:
            self.handleError(record)


def get_logger(name: str) -> Any:
    """A structlog logger carrying `logger=name` on every line."""
    # Lazy, so module-level loggers pick up configure_logging(); "logger" itself is a
    # reserved argument name of structlog's wrap_logger, hence the rename in a processor.
    return structlog.get_logger(logger_name=name)
