"""A request aiohttp cannot parse is logged as one warning line, not an error with a
traceback (the daemon's logs are read by people; a malformed request is the client's)."""

from __future__ import annotations

import logging
import sys

from aiohttp.http_exceptions import BadHttpMessage

from syncd.logging import configure_logging


def test_malformed_request_is_a_warning_without_traceback() -> None:
    configure_logging("info", "json", [])
    server = logging.getLogger("aiohttp.server")
    try:
        raise BadHttpMessage("Invalid header value char")
    except BadHttpMessage:
        record = server.makeRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request from %s",
            ("127.0.0.1",),
            sys.exc_info(),
        )
    assert all(f.filter(record) if hasattr(f, "filter") else f(record) for f in server.filters)
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert "Invalid header value char" in record.getMessage()


def test_a_real_server_error_keeps_its_traceback() -> None:
    configure_logging("info", "json", [])
    server = logging.getLogger("aiohttp.server")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = server.makeRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request",
            (),
            sys.exc_info(),
        )
    for f in server.filters:
        f.filter(record) if hasattr(f, "filter") else f(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
