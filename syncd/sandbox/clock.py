"""How fast the simulators' own delays run: ``SYNCD_SANDBOX_TIME_FACTOR`` scales them.

The simulators model delays the vendors have (HubSpot's search index lags behind writes, for
one). Tests keep those delays on and make them short by setting the factor below 1 (0.1: a
10-second lag lasts one second); the behaviour stays, only the clock is faster. Unset, the
factor is 1: `syncd sandbox` lags as the vendor does.
"""

from __future__ import annotations

import math
import os

ENV = "SYNCD_SANDBOX_TIME_FACTOR"


def time_factor() -> float:
    """The factor from the environment (1 when unset); ValueError when it is not a number > 0."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        raise ValueError(f"{ENV} must be a number > 0, not {raw!r}") from None
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"{ENV} must be a number > 0, not {raw!r}")
    return factor


def scaled(seconds: float) -> float:
    """A vendor delay in seconds, scaled by the time factor."""
    return seconds * time_factor()
