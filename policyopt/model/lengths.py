"""Token-length distributions for prompts and outputs.

Every distribution is over whole tokens ``1 .. max_len`` (``max_len`` is the workload's maximum
prompt or output length) and is *truncated* there: the probabilities are conditioned on
``1 <= L <= max_len``. For ``geometric`` and ``lognormal`` the ``mean`` field is the mean of the
distribution actually sampled, after rounding and truncation: the shape parameter is solved
numerically to hit it, so ``lambda* = mu / (m_p + m_d)`` uses exactly the means you wrote.

Each distribution exposes :meth:`pmf` (support and probabilities) and :meth:`sample`, which
draws from that same pmf, so theory and simulation agree by construction.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator
from scipy import optimize, special

from policyopt.errors import SpecError
from policyopt.model.files import check_sample_source, read_column
from policyopt.model.validation import StrictSpec


class _Length(StrictSpec):
    """Base of the length distributions (:class:`StrictSpec`: strict keys and numbers)."""

    def pmf(self, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Support (int64 token counts) and probabilities, truncated to ``1..max_len``."""
        raise NotImplementedError

    def mean_tokens(self, max_len: int) -> float:
        """Mean tokens of the truncated distribution."""
        values, probs = self.pmf(max_len)
        return float(values @ probs)

    def largest(self, max_len: int) -> int:
        """The largest length with positive probability."""
        values, probs = self.pmf(max_len)
        return int(values[probs > 0].max())

    def sample(self, rng: np.random.Generator, n: int, max_len: int) -> np.ndarray:
        """``n`` independent lengths (int64) drawn from :meth:`pmf`."""
        values, probs = self.pmf(max_len)
        if len(values) == 1:
            return np.full(n, values[0], dtype=np.int64)
        cdf = np.cumsum(probs)
        cdf[-1] = 1.0
        return values[np.searchsorted(cdf, rng.random(n), side="right")]


class Constant(_Length):
    """Every request has exactly ``value`` tokens."""

    kind: Literal["constant"] = "constant"
    value: int = Field(..., ge=1, description="tokens")

    def pmf(self, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        if self.value > max_len:
            raise SpecError(
                "value",
                f"{self.value} tokens exceeds the maximum length {max_len}",
                "lower the value or raise the workload's max length",
            )
        return np.array([self.value], dtype=np.int64), np.array([1.0])

    def sample(self, rng: np.random.Generator, n: int, max_len: int) -> np.ndarray:
        return np.full(n, self.value, dtype=np.int64)


class Uniform(_Length):
    """Uniform on the whole numbers ``low .. high`` (inclusive)."""

    kind: Literal["uniform"] = "uniform"
    low: int = Field(..., ge=1, description="tokens")
    high: int = Field(..., ge=1, description="tokens")

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise SpecError("high", f"{self.high} is below low ({self.low})", "give high >= low")
        return self

    def pmf(self, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        if self.low > max_len:
            raise SpecError("low", f"{self.low} exceeds the maximum length {max_len}", "lower it")
        values = np.arange(self.low, min(self.high, max_len) + 1, dtype=np.int64)
        return values, np.full(len(values), 1.0 / len(values))


@lru_cache(maxsize=256)
def _geometric_pmf(mean: float, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    values = np.arange(1, max_len + 1, dtype=np.int64)
    if mean == 1.0:
        probs = np.zeros(max_len)
        probs[0] = 1.0
        return values, probs
    upper = (max_len + 1) / 2.0
    if mean >= upper:
        raise SpecError(
            "mean",
            f"a geometric length truncated to {max_len} tokens has mean < {upper:g}",
            f"lower the mean or raise the maximum length above {2 * mean - 1:.0f}",
        )

    def probs_for(q: float) -> np.ndarray:
        logp = (values - 1) * math.log1p(-q)
        w = np.exp(logp - logp.max())
        return w / w.sum()

    try:
        q = optimize.brentq(lambda q: values @ probs_for(q) - mean, 1e-12, 1 - 1e-12, xtol=1e-14)
    except ValueError:  # the mean is within rounding of an end of the reachable range
        raise SpecError(
            "mean",
            f"{mean:g} is too close to the largest mean ({upper:g}) of a geometric length "
            f"truncated to {max_len} tokens",
            f"lower the mean or raise the maximum length above {2 * mean - 1:.0f}",
        ) from None
    return values, probs_for(q)


def _log_bin_masses(z: np.ndarray) -> np.ndarray:
    """``log(Phi(z[i+1]) - Phi(z[i]))`` for increasing ``z``, accurate in both tails.

    A bin above the median is computed from the upper tail (``Phi(-a) - Phi(-b)``), one below
    it from the lower tail, so nothing cancels and nothing underflows to a wrong 0.
    """
    a, b = z[:-1], z[1:]
    upper = a > 0
    lo = np.where(upper, -b, a)  # the bin as an interval of the lower tail: Phi(hi) - Phi(lo)
    hi = np.where(upper, -a, b)
    log_hi = special.log_ndtr(hi)
    log_lo = special.log_ndtr(lo)
    with np.errstate(divide="ignore"):
        return log_hi + np.log1p(-np.exp(log_lo - log_hi))


@lru_cache(maxsize=256)
def _lognormal_pmf(mean: float, sigma: float, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    values = np.arange(1, max_len + 1, dtype=np.int64)
    if not 1.0 < mean < max_len:
        raise SpecError(
            "mean",
            f"{mean:g} is not strictly between 1 and the maximum length {max_len}",
            "choose a mean inside that range",
        )
    log_edges = np.log(np.concatenate([[0.5], values + 0.5]))

    def probs_for(mu: float) -> np.ndarray:
        # bin masses in log space, normalized there: exact even when the total mass is tiny
        logw = _log_bin_masses((log_edges - mu) / sigma)
        w = np.exp(logw - logw.max())
        return w / w.sum()

    def gap(mu: float) -> float:
        return float(values @ probs_for(mu)) - mean

    lo, hi = float(log_edges[0]) - 8 * sigma, float(log_edges[-1]) + 8 * sigma
    # a mean near 1 or max_len needs mu further out, where all the mass sits on 1 or max_len
    if gap(lo) > 0:
        lo, hi = lo - 60 * sigma**2, lo
    elif gap(hi) < 0:
        lo, hi = hi, hi + 60 * sigma**2 * max_len
    try:
        mu = optimize.brentq(gap, lo, hi, xtol=1e-12)
    except ValueError:  # the mean is within rounding of 1 or max_len
        raise SpecError(
            "mean",
            f"{mean:g} is too close to 1 or to the maximum length {max_len} for a lognormal "
            f"with sigma {sigma:g}",
            "choose a mean further inside that range",
        ) from None
    return values, probs_for(mu)


class Geometric(_Length):
    """Geometric on ``1, 2, ...`` (memoryless), truncated; ``mean`` after truncation."""

    kind: Literal["geometric"] = "geometric"
    mean: float = Field(..., ge=1, description="mean tokens after truncation")

    def pmf(self, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        return _geometric_pmf(float(self.mean), max_len)


class LogNormal(_Length):
    """Lognormal rounded to whole tokens, truncated to ``1..max_len``.

    ``sigma`` is the standard deviation of ``log L`` (spread; 0.5 to 1 is typical of chat
    traces); ``mean`` is the mean after rounding and truncation.
    """

    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(..., gt=1, description="mean tokens after truncation")
    sigma: float = Field(0.7, gt=0, le=5, description="std of log-length")

    def pmf(self, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        return _lognormal_pmf(float(self.mean), float(self.sigma), max_len)


class Empirical(_Length):
    """Resample observed lengths: ``values`` inline, or a ``column`` of a CSV ``path``."""

    kind: Literal["empirical"] = "empirical"
    values: tuple[int, ...] | None = None
    path: str | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Empirical:
        check_sample_source(self.values, self.path, self.column, "the lengths")
        if self.values is not None and min(self.values) < 1:
            raise SpecError(
                "values",
                f"{min(self.values)} is not a length of >= 1 token",
                "give whole numbers of tokens >= 1",
            )
        return self

    def observed(self) -> np.ndarray:
        """The observed lengths (int64), read from the CSV if given by path."""
        if self.values is not None:
            return np.asarray(self.values, dtype=np.int64)
        try:
            return read_length_column(Path(str(self.path)), str(self.column))
        except SpecError as err:  # name the config key, keep the file location in the text
            raise SpecError("path", f"{err.field}: {err.problem}", err.fix) from None

    def pmf(self, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        obs = self.observed()
        obs = obs[obs <= max_len]
        if obs.size == 0:
            raise SpecError(
                "values",
                f"no observed length is <= the maximum length {max_len}",
                "raise the workload's max length",
            )
        values, counts = np.unique(obs, return_counts=True)
        return values.astype(np.int64), counts / counts.sum()


def _whole_tokens(value: float) -> bool:
    """A length of a CSV column: a whole number of tokens >= 1."""
    return value >= 1 and value == int(value)


def read_length_column(path: Path, column: str) -> np.ndarray:
    """Whole-token lengths from one CSV column; bad rows raise with their line number."""
    values = read_column(path, column, _whole_tokens, "a whole number of tokens >= 1")
    return np.asarray(values, dtype=np.int64)


LengthDist = Annotated[
    Constant | Uniform | Geometric | LogNormal | Empirical, Field(discriminator="kind")
]
