"""How much faster than real time the vendor simulators run under test.

The simulators' vendor delays stay on in every test — an ActiveCampaign bulk import takes
about 5 s, HubSpot's search index lags 30 s behind an update and a fifth of that behind a
create — on a faster clock: ``SYNCD_SANDBOX_TIME_FACTOR`` is set here, before any simulator
is built and inherited by subprocesses, unless the environment already sets it (``=1`` runs
them in real time). Rate limits are not scaled: clients pace themselves against them in
real time.
"""

from __future__ import annotations

import os

from syncd.sandbox.clock import ENV, time_factor

os.environ.setdefault(ENV, "0.1")
TIME_FACTOR = time_factor()


def scaled(seconds: float) -> float:
    """A simulator delay of `seconds` in real time, as the tests run it."""
    return seconds * TIME_FACTOR
