"""Streaming statistics with bounded memory: quantiles, means and batch-means intervals.

* :class:`LogHistogram` keeps counts in log-spaced bins (1,000 per decade from 1 µs to
  1e6 s), so a quantile is exact to within 0.12% relative, whatever the run length.
* :class:`WindowMeans` keeps per-window sums for batch-means confidence intervals: the
  measurement period is cut into ``k`` equal windows; the interval is
  ``mean ± t_{k-1, 0.975} · sd(window means) / sqrt(k)``.
* :func:`pooled_interval` pools the window means of several independent runs (seeds).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

_LOW_DECADE = -6
_DECADES = 12
_PER_DECADE = 1000


class LogHistogram:
    """Counts of positive values in log-spaced bins; quantiles to 0.12% relative."""

    def __init__(self) -> None:
        self.counts = np.zeros(_DECADES * _PER_DECADE + 2, dtype=np.int64)
        self.n = 0

    def add(self, values: np.ndarray) -> None:
        """Count ``values`` (non-finite ones are ignored; values <= 1 µs share the first bin)."""
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return
        idx = np.floor((np.log10(np.maximum(v, 1e-300)) - _LOW_DECADE) * _PER_DECADE) + 1
        idx = np.clip(idx, 0, len(self.counts) - 1).astype(np.int64)
        self.counts += np.bincount(idx, minlength=len(self.counts))
        self.n += int(v.size)

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (``0 < q < 1``) as the geometric middle of its bin; nan if empty."""
        if self.n == 0:
            return math.nan
        rank = q * self.n
        i = int(np.searchsorted(np.cumsum(self.counts), rank, side="left"))
        i = min(max(i, 1), len(self.counts) - 2)
        return 10 ** (_LOW_DECADE + (i - 0.5) / _PER_DECADE)


def t_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval ``(mean, low, high)`` of i.i.d.-ish samples."""
    x = np.asarray(samples, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def pooled_interval(windows: list[np.ndarray], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval ``(mean, low, high)`` of the batch means of several
    independent runs pooled together: runs of one length cut into windows of one width give
    equally weighted window means, nearly independent within a run (batch means) and
    independent across runs (replications), so their grand mean is the mean over runs and
    the interval has ``runs x windows - 1`` degrees of freedom."""
    return t_interval(np.concatenate([np.asarray(w, dtype=float) for w in windows]), level)


class WindowMeans:
    """Per-window sums and counts over ``[start, end)`` cut into ``k`` equal windows."""

    def __init__(self, start: float, end: float, k: int = 20) -> None:
        self.start = start
        self.end = end
        self.k = k
        self.sums = np.zeros(k)
        self.counts = np.zeros(k)

    @property
    def width(self) -> float:
        return (self.end - self.start) / self.k

    def window_of(self, t: np.ndarray) -> np.ndarray:
        """Window index of each time, -1 outside ``[start, end)``."""
        idx = np.floor((np.asarray(t, dtype=float) - self.start) / self.width)
        idx[~np.isfinite(idx) | (idx < 0) | (idx >= self.k)] = -1
        return idx.astype(np.int64)

    def add(self, t: np.ndarray, values: np.ndarray | None = None) -> None:
        """Add ``values`` (or a count of one each) in the windows of times ``t``."""
        idx = self.window_of(t)
        keep = idx >= 0
        vals = np.ones(int(keep.sum())) if values is None else np.asarray(values)[keep]
        self.sums += np.bincount(idx[keep], weights=vals, minlength=self.k)
        self.counts += np.bincount(idx[keep], minlength=self.k)

    def interval_of_means(self) -> tuple[float, float, float]:
        """Batch-means interval of the per-window averages ``sums / counts``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return t_interval(self.sums / self.counts)

    def interval_of_rates(self) -> tuple[float, float, float]:
        """Batch-means interval of the per-window rates ``sums / width``."""
        return t_interval(self.sums / self.width)


def overlap_by_window(starts: np.ndarray, ends: np.ndarray, windows: WindowMeans) -> np.ndarray:
    """Total length of ``[starts_i, ends_i)`` falling in each window (for time averages)."""
    s = np.asarray(starts, dtype=float)
    e = np.asarray(ends, dtype=float)
    out = np.zeros(windows.k)
    for j in range(windows.k):
        lo = windows.start + j * windows.width
        hi = lo + windows.width
        out[j] = float(np.clip(np.minimum(e, hi) - np.maximum(s, lo), 0.0, None).sum())
    return out
