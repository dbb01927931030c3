"""Arrival processes of a network's workflows, beyond Poisson and deterministic
(``docs/arrivals.md``).

Every process has a mean ``rate`` (requests/s: what the traffic equations and loads use),
``with_rate(rate)`` (the same process sped up or slowed down to that mean rate: what
``NetworkSpec.scaled`` and ``--load`` use) and ``stream(rng)``, a :class:`GapStream` that
gives the interarrival times (seconds) in blocks, from time 0 on:

* ``renewal``: i.i.d. interarrival times with mean ``1 / rate`` and the shape of ``law``, a
  service-time distribution without its mean (:mod:`policyopt.model.service`:
  ``{kind: erlang, k: 4}``, ``{kind: hyperexponential, scv: 4}``, ``{kind: lognormal, sigma:
  1}``, ``{kind: deterministic}``, ``{kind: exponential}``);
* ``mmpp``: a Markov-modulated Poisson process: Poisson at ``rates[i]`` while in state ``i``,
  which lasts an exponential time of mean ``holding[i]`` seconds; the states follow one
  another in a cycle (``0, 1, ..., n-1, 0, ...``), from state 0 at time 0;
* ``piecewise``: Poisson with a piecewise-constant rate profile: ``rates[i]`` for
  ``durations[i]`` seconds, in turn, the profile repeating;
* ``trace``: replay the arrival times (seconds from the start, sorted) of a CSV ``column``
  (default ``arrival_s``, so a single-engine trace replays as it is), times ``time_scale``;
  no arrivals after the last.

Poisson and deterministic arrivals (:mod:`policyopt.model.workload`) are drawn by the
simulator itself, as they always were.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import Field, field_validator, model_validator

from policyopt.errors import SpecError
from policyopt.model.files import read_column
from policyopt.model.service import ServiceDist, parse_service
from policyopt.model.validation import StrictSpec


class GapStream(Protocol):
    """Interarrival times of one workflow, in order: ``block(n)`` gives the next ``n``
    (seconds; ``inf`` once a finite process has no arrival left)."""

    def block(self, n: int) -> list[float]: ...


class _Renewal:
    """i.i.d. gaps drawn from a distribution, a block at a time."""

    def __init__(self, law: ServiceDist, rng: np.random.Generator) -> None:
        self.law, self.rng = law, rng

    def block(self, n: int) -> list[float]:
        return self.law.sample(self.rng, n).tolist()  # type: ignore[no-any-return]


class _Modulated:
    """Poisson arrivals whose rate follows a cycle of phases (rate, duration); the durations
    are exponential (``random``: an MMPP) or fixed (a rate profile)."""

    def __init__(
        self,
        rates: tuple[float, ...],
        durations: tuple[float, ...],
        random: bool,
        rng: np.random.Generator,
    ) -> None:
        self.rates, self.durations, self.random, self.rng = rates, durations, random, rng
        self.phase = 0
        self.left = self._duration(0)  # seconds left in the current phase
        self.since = 0.0  # seconds since the last arrival

    def _duration(self, phase: int) -> float:
        mean = self.durations[phase]
        return float(self.rng.exponential(mean)) if self.random else mean

    def block(self, n: int) -> list[float]:
        gaps: list[float] = []
        rng, rates, m = self.rng, self.rates, len(self.rates)
        while len(gaps) < n:
            rate = rates[self.phase]
            gap = float(rng.exponential(1.0 / rate)) if rate > 0 else math.inf
            if gap < self.left:  # an arrival in this phase (the rest of it is memoryless)
                self.left -= gap
                gaps.append(self.since + gap)
                self.since = 0.0
            else:  # the phase ends first
                self.since += self.left
                self.phase = (self.phase + 1) % m
                self.left = self._duration(self.phase)
        return gaps


class _Replay:
    """The gaps of a list of arrival times, then ``inf``."""

    def __init__(self, times: np.ndarray) -> None:
        self.gaps = np.diff(times, prepend=0.0).tolist()
        self.pos = 0

    def block(self, n: int) -> list[float]:
        out = self.gaps[self.pos : self.pos + n]
        self.pos += len(out)
        return out + [math.inf] * (n - len(out))


def _positive_total(rates: tuple[float, ...], weights: tuple[float, ...]) -> float:
    """``sum r_i w_i / sum w_i``: a time-average rate."""
    return math.fsum(r * w for r, w in zip(rates, weights, strict=True)) / math.fsum(weights)


def _check_phases(rates: tuple[float, ...], times: tuple[float, ...], name: str) -> None:
    """One rate per phase, rates >= 0 and not all 0, phase times > 0."""
    if not rates:
        raise SpecError("rates", "empty", "give one rate per phase (requests/s)")
    if len(rates) != len(times):
        raise SpecError(
            name, f"{len(times)} values for {len(rates)} rates", "give one per phase (seconds)"
        )
    if min(rates) < 0:
        raise SpecError("rates", f"{min(rates)!r} is a negative rate", "give rates >= 0")
    if max(rates) <= 0:
        raise SpecError("rates", "every rate is 0: nothing ever arrives", "make one > 0")
    if min(times) <= 0:
        raise SpecError(name, f"{min(times)!r} is not > 0 seconds", "give times > 0")


class RenewalArrivals(StrictSpec):
    """i.i.d. interarrival times: mean ``1 / rate``, the shape of ``law``."""

    kind: Literal["renewal"] = "renewal"
    rate: float = Field(..., gt=0, description="requests/s")
    law: dict[str, Any] = Field(default_factory=lambda: {"kind": "exponential"})

    @field_validator("law")
    @classmethod
    def _shape_only(cls, law: dict[str, Any]) -> dict[str, Any]:
        if "mean" in law:
            raise SpecError(
                "mean", "the mean interarrival time is 1 / rate", "remove mean (set rate)"
            )
        parse_service({**law, "mean": 1.0})  # a valid shape
        return law

    def interarrival(self) -> ServiceDist:
        """The interarrival-time distribution (seconds)."""
        return parse_service({**self.law, "mean": 1.0 / self.rate})

    def with_rate(self, rate: float) -> RenewalArrivals:
        return self.model_copy(update={"rate": float(rate)})

    def stream(self, rng: np.random.Generator) -> GapStream:
        return _Renewal(self.interarrival(), rng)


class MMPPArrivals(StrictSpec):
    """A Markov-modulated Poisson process with cyclic states (see the module docstring)."""

    kind: Literal["mmpp"] = "mmpp"
    rates: tuple[float, ...]
    holding: tuple[float, ...]

    @model_validator(mode="after")
    def _phases(self) -> MMPPArrivals:
        _check_phases(self.rates, self.holding, "holding")
        return self

    @property
    def rate(self) -> float:
        """The long-run rate: each state's rate weighted by its mean holding time."""
        return _positive_total(self.rates, self.holding)

    def with_rate(self, rate: float) -> MMPPArrivals:
        f = float(rate) / self.rate
        return self.model_copy(update={"rates": tuple(r * f for r in self.rates)})

    def stream(self, rng: np.random.Generator) -> GapStream:
        return _Modulated(self.rates, self.holding, True, rng)


class PiecewiseArrivals(StrictSpec):
    """Poisson with a repeating piecewise-constant rate profile (see the module docstring)."""

    kind: Literal["piecewise"] = "piecewise"
    rates: tuple[float, ...]
    durations: tuple[float, ...]

    @model_validator(mode="after")
    def _phases(self) -> PiecewiseArrivals:
        _check_phases(self.rates, self.durations, "durations")
        return self

    @property
    def rate(self) -> float:
        """The rate averaged over one period of the profile."""
        return _positive_total(self.rates, self.durations)

    def with_rate(self, rate: float) -> PiecewiseArrivals:
        f = float(rate) / self.rate
        return self.model_copy(update={"rates": tuple(r * f for r in self.rates)})

    def stream(self, rng: np.random.Generator) -> GapStream:
        return _Modulated(self.rates, self.durations, False, rng)


def _time(value: float) -> bool:
    """An arrival time of a CSV column: >= 0 seconds."""
    return value >= 0


class ReplayArrivals(StrictSpec):
    """Replay the arrival times of a CSV column (see the module docstring)."""

    kind: Literal["trace"] = "trace"
    path: str
    column: str = "arrival_s"
    time_scale: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _readable(self) -> ReplayArrivals:
        self.times()
        return self

    def times(self) -> np.ndarray:
        """The arrival times (seconds from the start), scaled; refused unsorted or all 0."""
        try:
            raw = read_column(Path(self.path), self.column, _time, "a time >= 0 s")
        except SpecError as err:  # name the config key, keep the file location in the text
            raise SpecError("path", f"{err.field}: {err.problem}", err.fix) from None
        times = np.asarray(raw, dtype=float)
        down = np.flatnonzero(np.diff(times) < 0)
        if down.size:
            raise SpecError(
                "path",
                f"{self.path} line {int(down[0]) + 3}: {self.column} goes back in time",
                "sort the rows by arrival time",
            )
        if times[-1] <= 0:
            raise SpecError("path", f"all {len(times)} arrivals are at t = 0", "spread them")
        return times * self.time_scale

    @property
    def rate(self) -> float:
        """Arrivals per second of the trace: its count over its last arrival time."""
        times = self.times()
        return len(times) / float(times[-1])

    def with_rate(self, rate: float) -> ReplayArrivals:
        return self.model_copy(update={"time_scale": self.time_scale * self.rate / float(rate)})

    def stream(self, rng: np.random.Generator) -> GapStream:
        return _Replay(self.times())
