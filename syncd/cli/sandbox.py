"""``syncd sandbox`` (serve the simulators) and ``syncd demo``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from syncd.cli.client import seconds
from syncd.sandbox import runner
from syncd.sandbox.activecampaign.state import DEFAULT_IMPORT_LATENCY
from syncd.sandbox.clock import time_factor
from syncd.sandbox.common import keep_data_out_of_collector


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Serve simulators on loopback until Ctrl-C; print their URLs and credentials."""
    vendors = runner.VENDORS if args.vendor == "all" else (args.vendor,)
    try:
        time_factor()
    except ValueError as exc:
        print(f"syncd sandbox: {exc}", file=sys.stderr)
        return 2

    async def main() -> int:
        sandboxes = await runner.start_sandboxes(
            vendors,
            base_port=args.port,
            seed=args.seed,
            rate_limits=not args.no_rate_limits,
            duplicate_rules=not args.no_duplicate_rules,
            hs_search_lag=args.hs_search_lag,
            ac_import_latency=args.ac_import_latency,
        )
        # Stop signals are handled before the banner says Ctrl-C stops: a signal sent as soon
        # as it is read must stop the simulators, not kill the process mid-start.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        for vendor, rs in sandboxes.running.items():
            print(f"{vendor:15} {rs.url}")
        credentials = {
            "salesforce": f"salesforce     client_id={runner.SF_CLIENT_ID}\n"
            f"               client_secret={runner.SF_CLIENT_SECRET}",
            "activecampaign": f"activecampaign Api-Token: {runner.AC_TOKEN}"
            f"  (base_url {sandboxes.running['activecampaign'].url}/api/3)"
            if "activecampaign" in sandboxes.running
            else "",
            "hubspot": f"hubspot        Bearer {runner.HS_TOKEN}"
            f"  webhook secret {runner.HS_CLIENT_SECRET}",
        }
        for vendor in sandboxes.running:  # only the simulators that serve
            print(credentials[vendor])
        print(
            "admin: GET /_sandbox/stats, GET /_sandbox/ledger, POST /_sandbox/faults; Ctrl-C stops"
        )
        print("\n# syncd config for these simulators:" + sandboxes.config_toml(), flush=True)
        collector = loop.create_task(keep_data_out_of_collector())
        await stop.wait()
        collector.cancel()
        await sandboxes.close()
        return 0

    return asyncio.run(main())


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo."""
    from syncd.cli.demo import main_args

    return main_args(args)


def register(sub: Any, add: Any) -> None:
    """Add the sandbox and demo commands."""
    sp = sub.add_parser("sandbox", help="serve the vendor simulators for manual use")
    sp.add_argument("vendor", choices=(*runner.VENDORS, "all"))
    sp.add_argument("--port", type=int, default=0, help="first port (next vendors take +1, +2)")
    sp.add_argument("--seed", action="store_true", help="fill the simulators with sample data")
    sp.add_argument("--no-rate-limits", action="store_true", help="turn the vendor limits off")
    sp.add_argument(
        "--no-duplicate-rules",
        action="store_true",
        help="turn Salesforce's duplicate rules off (on: a second Contact or Lead with an"
        " existing email is refused unless the request says allowSave=true)",
    )
    sp.add_argument(
        "--hs-search-lag",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="seconds before a HubSpot update is found by search, a create in a fifth of"
        " it (default: 30, times SYNCD_SANDBOX_TIME_FACTOR; 0: instantly consistent)",
    )
    sp.add_argument(
        "--ac-import-latency",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="how long an ActiveCampaign bulk import takes to process (default"
        f" {DEFAULT_IMPORT_LATENCY:g}; 0 completes imports at once)",
    )
    sp.set_defaults(func=cmd_sandbox)
    sp = sub.add_parser("demo", help="simulators + the real daemon + a webhook generator, live")
    sp.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    sp.add_argument("--port", type=int, default=8080, help="the daemon's port (default 8080)")
    sp.add_argument("--hub", choices=("activecampaign",), default="activecampaign")
    sp.set_defaults(func=cmd_demo)
