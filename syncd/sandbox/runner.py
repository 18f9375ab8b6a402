"""Start the vendor simulators together on loopback, and describe how to point syncd at them.

Used by ``syncd sandbox``, ``syncd demo``, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from syncd.sandbox.common import SandboxBase, bound_port, keep_data_out_of_collector, serve

SF_CLIENT_ID = "sandbox-client-id"
SF_CLIENT_SECRET = "sandbox-client-secret"
AC_TOKEN = "sandbox-ac-api-token"
HS_TOKEN = "sandbox-hubspot-token"
HS_CLIENT_SECRET = "sandbox-hubspot-client-secret"
VENDORS = ("salesforce", "activecampaign", "hubspot")


@dataclass
class RunningSandbox:
    """One simulator: its state object, its runner and its base URL."""

    vendor: str
    state: SandboxBase
    runner: web.AppRunner
    url: str


@dataclass
class SandboxSet:
    """The simulators that are running, by vendor."""

    running: dict[str, RunningSandbox] = field(default_factory=dict)

    def url(self, vendor: str) -> str:
        """Base URL of a running simulator."""
        return self.running[vendor].url

    def state(self, vendor: str) -> Any:
        """The simulator's in-memory state (for seeding, ledgers and fault knobs)."""
        return self.running[vendor].state

    def config_toml(self, hub: str | None = None) -> str:
        """``[hub]`` and ``[crm]`` sections pointing syncd at those of these simulators that
        run; the hub is `hub`, else ActiveCampaign when it runs, else HubSpot."""
        if hub is None:
            hub = "activecampaign" if "activecampaign" in self.running else "hubspot"
        out = ""
        if hub == "activecampaign" and hub in self.running:
            out += f"""
[hub]
kind = "activecampaign"
base_url = "{self.url("activecampaign")}/api/3"
api_token = "{AC_TOKEN}"
webhook_token = "demo-webhook-token-0123456789"
"""
        elif hub == "hubspot" and hub in self.running:
            out += f"""
[hub]
kind = "hubspot"
base_url = "{self.url("hubspot")}"
api_token = "{HS_TOKEN}"
webhook_secret = "{HS_CLIENT_SECRET}"
"""
        if "salesforce" in self.running:
            out += f"""
[crm]
kind = "salesforce"
login_url = "{self.url("salesforce")}"
auth_flow = "client_credentials"
client_id = "{SF_CLIENT_ID}"
client_secret = "{SF_CLIENT_SECRET}"
"""
        return out

    async def close(self) -> None:
        """Stop every simulator; safe to call twice."""
        for rs in list(self.running.values()):
            await rs.runner.cleanup()
        self.running.clear()


async def start_sandboxes(
    vendors: Sequence[str] = VENDORS,
    *,
    host: str = "127.0.0.1",
    base_port: int = 0,
    rate_limits: bool = True,
    seed: bool = False,
    duplicate_rules: bool = True,
    hs_search_lag: float | None = None,
    ac_import_latency: float | None = None,
) -> SandboxSet:
    """Start the named simulators (ports base_port, +1, +2 … or free ones when 0).

    Salesforce's duplicate rules are on unless `duplicate_rules` is false: the standard
    Contact and Lead rules are active in most orgs. HubSpot's search lags behind writes by
    `hs_search_lag` seconds and ActiveCampaign bulk imports take `ac_import_latency` seconds
    (None: the vendor's, scaled by SYNCD_SANDBOX_TIME_FACTOR)."""
    out = SandboxSet()
    for i, vendor in enumerate(vendors):
        state, app = _build(
            vendor,
            rate_limits=rate_limits,
            seed=seed,
            duplicate_rules=duplicate_rules,
            hs_search_lag=hs_search_lag,
            ac_import_latency=ac_import_latency,
        )
        runner = await serve(app, host, base_port + i if base_port else 0)
        out.running[vendor] = RunningSandbox(
            vendor, state, runner, f"http://{host}:{bound_port(runner)}"
        )
    return out


def _build(
    vendor: str,
    *,
    rate_limits: bool,
    seed: bool,
    duplicate_rules: bool = True,
    hs_search_lag: float | None = None,
    ac_import_latency: float | None = None,
) -> tuple[SandboxBase, web.Application]:
    if vendor == "salesforce":
        from syncd.sandbox.salesforce.app import (
            SalesforceSandbox,
            create_salesforce_app,
            seed_salesforce,
        )

        sf = SalesforceSandbox(
            client_id=SF_CLIENT_ID,
            client_secret=SF_CLIENT_SECRET,
            duplicate_rules="alert" if duplicate_rules else "off",
        )
        if seed:
            seed_salesforce(
                sf,
                contacts=2000,
                leads=1000,
                converted_fraction=0.2,
                accounts=100,
                opportunities=200,
            )
        return sf, create_salesforce_app(sf)
    if vendor == "activecampaign":
        from syncd.sandbox.activecampaign.app import (
            ActiveCampaignSandbox,
            create_activecampaign_app,
        )
        from syncd.sandbox.activecampaign.seed import seed_activecampaign

        ac = ActiveCampaignSandbox(import_latency=ac_import_latency)
        if seed:
            seed_activecampaign(ac, contacts=2000)
        rate = (5, 1.0) if rate_limits else None
        return ac, create_activecampaign_app(
            ac, api_token=AC_TOKEN, rate_limit=rate, import_limits=rate_limits
        )
    if vendor == "hubspot":
        from syncd.sandbox.hubspot.app import HubSpotSandbox, create_hubspot_app, seed_hubspot

        hs = HubSpotSandbox(search_lag=hs_search_lag)
        if seed:
            seed_hubspot(hs, contacts=2000, companies=100)
        hs_rate = (100, 10.0) if rate_limits else None
        return hs, create_hubspot_app(hs, token=HS_TOKEN, rate_limit=hs_rate)
    raise ValueError(f"unknown sandbox {vendor!r}; use one of {', '.join(VENDORS)}")


class SandboxThread:
    """Simulators on their own event loop in a thread, for synchronous tests and benchmarks."""

    def __init__(self, vendors: Sequence[str] = VENDORS, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.set: SandboxSet = self.call(start_sandboxes(vendors, **kwargs))
        self._collector: concurrent.futures.Future[None] | None = None

    def keep_data_out_of_collector(self) -> None:
        """Freeze the simulators' growing data out of the collector's full passes, as
        `syncd sandbox` does in its own process (benchmarks: the data then costs no CPU)."""
        if self._collector is None:
            self._collector = asyncio.run_coroutine_threadsafe(
                keep_data_out_of_collector(), self._loop
            )

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        """Run a coroutine on the simulators' loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def run(self, fn: Any, *args: Any) -> Any:
        """Run a plain function on the simulators' loop (their state is not thread-safe)."""

        async def wrapper() -> Any:
            return fn(*args)

        return self.call(wrapper())

    def close(self) -> None:
        """Stop the simulators and the loop."""
        if self._collector is not None:
            self._collector.cancel()
        self.call(self.set.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
