"""The sync overview: queue, health, records, restore and export, plus the web page.

`install` is the one route installer the daemon adds (see syncd/wiring.py).
"""

from __future__ import annotations

from aiohttp import web

from syncd.web import page, queue_api, records_api
from syncd.web.api import ApiRegistry
from syncd.web.overview_model import setup


def install(app: web.Application, api: ApiRegistry) -> None:
    """Add the overview's admin routes (documented, bearer auth) and the web page."""
    setup(app)
    queue_api.register(api)
    records_api.register(api)
    page.install(app)
