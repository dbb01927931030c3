"""The stability verdict: backlog drift over the second half of a run, and growth across
cycles.

The token backlog ``B(t)`` (prefill plus decode tokens still owed to requests in the system;
or the jobs in a network, or an engine's remaining work) is sampled on a regular grid. Two
tests, with ``tol = 2%`` of the offered rate ``lambda * (m_p + m_d)``:

1. **Window drift.** Over the second half of the run the samples are cut into ``k = 10``
   consecutive windows; in each the drift is the least-squares slope of ``B`` against time
   (tokens/s). The estimate is the mean of those slopes, with a batch-means 95% Student-t
   interval: ``unstable`` when the interval's lower end is above ``tol`` (the backlog grows),
   ``stable`` when its upper end is below ``tol``, ``inconclusive`` otherwise.
2. **Growth across cycles** (:func:`record_growth`), asked only when test 1 is
   inconclusive. A backlog that grows in waves (a fill-and-drain cycle whose peaks keep
   rising, as in the Lu-Kumar network under its destabilizing priority) makes the window
   slopes alternate in sign, so their interval straddles ``tol`` however long the run. Its
   running maximum ``M(t) = max_{s <= t} B(s)`` still grows in proportion to time, while a
   stable backlog's running maximum levels off (it grows only like the logarithm of the
   number of nearly independent stretches). The verdict is ``unstable`` when the running
   maximum grows by a factor :data:`RECORD_RATIO` from a quarter to half of the run and again
   from half to the end, and faster than :data:`RECORD_RATE` times ``tol`` over the second
   half: ``M(T/2) >= 1.5 M(T/4)``, ``M(T) >= 1.5 M(T/2)`` and
   ``(M(T) - M(T/2)) / (T/2) > 2 tol`` (times from the first sample), and the backlog stays
   above ``M(T/4)`` throughout the last quarter (a stable but bursty backlog reaches new
   peaks and falls back; a diverging one's troughs rise too). A linear growth from an empty
   system gives ratios near 2. The false-alarm rate on stable runs is measured in
   ``docs/metrics.md``.

The drift numbers (estimate and interval) are those of test 1 whatever the verdict.
The fluid prediction for a work-conserving scheduler is ``max(0, lambda (m_p + m_d) - mu)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from policyopt.sim.stats import t_interval

DRIFT_WINDOWS = 10
DRIFT_TOLERANCE = 0.02
RECORD_RATIO = 1.5
"""Growth of the running maximum, from a quarter to half of the run and from half to the end,
that :func:`record_growth` calls growth across cycles (a linear growth from empty gives 2)."""
RECORD_RATE = 2.0
"""The running maximum must also grow over the second half faster than this many times the
drift tolerance (``2 * 2% = 4%`` of the offered rate)."""


@dataclass(frozen=True)
class Verdict:
    """Backlog drift (tokens/s) with its 95% interval, the fluid prediction, and the verdict."""

    drift: float
    drift_low: float
    drift_high: float
    fluid_drift: float
    threshold: float
    verdict: str
    record_growth: bool = False  # the verdict came from test 2 (growth across cycles)


def window_slopes(t: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Least-squares slope of ``y`` on ``t`` in each of ``k`` consecutive windows."""
    slopes = []
    for tw, yw in zip(np.array_split(t, k), np.array_split(y, k), strict=True):
        if len(tw) < 2 or np.ptp(tw) == 0:
            continue
        tc = tw - tw.mean()
        slopes.append(float(tc @ (yw - yw.mean()) / (tc @ tc)))
    return np.asarray(slopes)


def running_max_at(times: np.ndarray, y: np.ndarray, fractions: tuple[float, ...]) -> list[float]:
    """The running maximum of ``y`` at the last sample at or before each fraction of the run
    (``t[0] + f (t[-1] - t[0])``)."""
    m = np.maximum.accumulate(y)
    span = times[-1] - times[0]
    out = []
    for f in fractions:
        i = int(np.searchsorted(times, times[0] + f * span, side="right")) - 1
        out.append(float(m[max(i, 0)]))
    return out


def record_growth(times: np.ndarray, y: np.ndarray, threshold: float) -> bool:
    """Test 2 of the module docstring: does the running maximum of ``y`` grow across the
    run, ``M(T/2) >= RECORD_RATIO M(T/4)``, ``M(T) >= RECORD_RATIO M(T/2)``, at more than
    ``RECORD_RATE * threshold`` per second over the second half, while ``y`` never falls back
    to ``M(T/4)`` in the last quarter?"""
    t = np.asarray(times, dtype=float)
    v = np.asarray(y, dtype=float)
    if t.size < 8 or not np.all(np.isfinite(v)) or t[-1] <= t[0]:
        return False
    m4, m2, m1 = running_max_at(t, v, (0.25, 0.5, 1.0))
    rate = (m1 - m2) / ((t[-1] - t[0]) / 2)
    last = v[t >= t[0] + 0.75 * (t[-1] - t[0])]
    return (
        m4 > 0
        and m2 >= RECORD_RATIO * m4
        and m1 >= RECORD_RATIO * m2
        and rate > RECORD_RATE * threshold
        and last.size > 0
        and float(last.min()) >= m4  # the troughs rise too: no return to early levels
    )


def verdict(
    times: np.ndarray, backlog: np.ndarray, offered_tokens: float, capacity_tokens: float
) -> Verdict:
    """Judge stability from the backlog series (tokens) sampled at ``times`` (s).

    ``offered_tokens`` is ``lambda (m_p + m_d)`` and ``capacity_tokens`` is ``mu``, both
    tokens/s. The drift and its interval are test 1's; the verdict is test 1's, or
    ``unstable`` when test 1 is inconclusive and test 2 sees growth across cycles.
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
    if word == "inconclusive" and record_growth(t, y, threshold):
        return Verdict(mean, low, high, fluid, threshold, "unstable", record_growth=True)
    return Verdict(mean, low, high, fluid, threshold, word)
