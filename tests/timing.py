"""How much faster than real time the vendor simulators run under test.

The simulators' processing latencies (an ActiveCampaign bulk import takes about 5 s) stay
on in every test, scaled by ``SYNCD_SANDBOX_TIME_FACTOR``: the tests set it here, before any
simulator is built, unless the environment already does (``=1`` runs them in real time).
Rate limits are not scaled: the clients pace themselves against them in real time.
"""

from __future__ import annotations

import os

from syncd.sandbox.common import TIME_FACTOR_ENV, time_factor

os.environ.setdefault(TIME_FACTOR_ENV, "0.05")
TIME_FACTOR = time_factor()


def scaled(seconds: float) -> float:
    """A simulator latency of `seconds` in real time, as the tests run it."""
    return seconds * TIME_FACTOR
