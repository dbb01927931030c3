"""The stability verdict: backlog drift over the second half of a run.

The token backlog ``B(t)`` (prefill plus decode tokens still owed to requests in the system)
is sampled on a regular grid. Over the second half of the run the samples are cut into
``k = 10`` consecutive windows; in each the drift is the least-squares slope of ``B`` against
time (tokens/s). The estimate is the mean of those slopes, with a batch-means 95% Student-t
interval.

Verdict, with ``tol = 2%`` of the offered token rate ``lambda * (m_p + m_d)``:

* ``unstable`` when the interval's lower end is above ``tol`` (the backlog grows);
* ``stable`` when its upper end is below ``tol``;
* ``inconclusive`` otherwise (run longer).

The fluid prediction for a work-conserving scheduler is ``max(0, lambda (m_p + m_d) - mu)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from policyopt.sim.stats import t_interval

DRIFT_WINDOWS = 10
DRIFT_TOLERANCE = 0.02


@dataclass(frozen=True)
class Verdict:
    """Backlog drift (tokens/s) with its 95% interval, the fluid prediction, and the verdict."""

    drift: float
    drift_low: float
    drift_high: float
    fluid_drift: float
    threshold: float
    verdict: str


def window_slopes(t: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Least-squares slope of ``y`` on ``t`` in each of ``k`` consecutive windows."""
    slopes = []
    for tw, yw in zip(np.array_split(t, k), np.array_split(y, k), strict=True):
        if len(tw) < 2 or np.ptp(tw) == 0:
            continue
        tc = tw - tw.mean()
        slopes.append(float(tc @ (yw - yw.mean()) / (tc @ tc)))
    return np.asarray(slopes)


def verdict(
    times: np.ndarray, backlog: np.ndarray, offered_tokens: float, capacity_tokens: float
) -> Verdict:
    """Judge stability from the backlog series (tokens) sampled at ``times`` (s).

    ``offered_tokens`` is ``lambda (m_p + m_d)`` and ``capacity_tokens`` is ``mu``, both
    tokens/s.
    """
    fluid = max(0.0, offered_tokens - capacity_tokens)
    threshold = DRIFT_TOLERANCE * offered_tokens
    t = np.asarray(times, dtype=float)
    y = np.asarray(backlog, dtype=float)
    if t.size < 4:
        return Verdict(math.nan, math.nan, math.nan, fluid, threshold, "inconclusive")
    half = t >= t[0] + (t[-1] - t[0]) / 2
    slopes = window_slopes(t[half], y[half], DRIFT_WINDOWS)
    mean, low, high = t_interval(slopes)
    if not math.isfinite(low):
        word = "inconclusive"
    elif low > threshold:
        word = "unstable"
    elif high < threshold:
        word = "stable"
    else:
        word = "inconclusive"
    return Verdict(mean, low, high, fluid, threshold, word)
