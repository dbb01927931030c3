"""Service-time distributions of the classes served at classic stations (seconds per job).

A class at a station declares ``service: {kind: KIND, ...}`` (``docs/networks.md``); without
``kind`` the service is exponential. Every distribution gives its mean ``E[S]`` and second
moment ``E[S^2]`` (seconds, seconds squared: what the traffic equations and the exact
formulas of :mod:`policyopt.solvers.queueing` read), its Laplace-Stieltjes transform, and
draws samples in blocks.

=================== ======================================= ============================
kind                parameters                              ``E[S^2]``
=================== ======================================= ============================
``exponential``     ``mean``                                ``2 m^2``
``deterministic``   ``mean``                                ``m^2``
``erlang``          ``mean``, ``k`` phases                  ``m^2 (1 + 1/k)``
``hyperexponential``  ``means`` and ``probs`` of the phases,  ``sum_i p_i 2 m_i^2``
                    or ``mean`` and ``scv >= 1`` (two
                    phases with balanced means)
``lognormal``       ``mean``, ``sigma`` (of ``log S``)      ``m^2 exp(sigma^2)``
``empirical``       ``values`` (seconds), or a ``column``   the sample's
                    of a CSV ``path``; resampled uniformly
=================== ======================================= ============================

The registry :data:`SERVICE_KINDS` maps each ``kind`` to its spec class;
:func:`register_service` adds one (a :class:`ServiceDist` subclass with a ``Literal`` kind),
:func:`unregister_service` forgets one, and :func:`parse_service` builds a spec from a
mapping, naming the field of a bad one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from policyopt.errors import SpecError
from policyopt.model.config import build
from policyopt.model.files import check_sample_source, read_column
from policyopt.model.validation import StrictSpec


class ServiceDist(StrictSpec):
    """Base of the service-time distributions: ``kind`` and the four methods below."""

    kind: str

    def mean_time(self) -> float:
        """``E[S]``, seconds."""
        raise NotImplementedError

    def second_moment(self) -> float:
        """``E[S^2]``, seconds squared."""
        raise NotImplementedError

    def squared_cv(self) -> float:
        """Squared coefficient of variation ``Var[S] / E[S]^2`` (1 for the exponential)."""
        m = self.mean_time()
        return self.second_moment() / (m * m) - 1.0

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` independent service times, seconds (float64)."""
        raise NotImplementedError

    def laplace(self, s: float) -> float:
        """The Laplace-Stieltjes transform ``E[exp(-s S)]`` at ``s >= 0`` (1/s)."""
        raise NotImplementedError


class Exponential(ServiceDist):
    """Exponential with mean ``mean`` seconds (rate ``1 / mean``)."""

    kind: Literal["exponential"] = "exponential"
    mean: float = Field(..., gt=0, description="seconds")

    def mean_time(self) -> float:
        return float(self.mean)

    def second_moment(self) -> float:
        return 2.0 * float(self.mean) ** 2

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(float(self.mean), n)

    def laplace(self, s: float) -> float:
        return 1.0 / (1.0 + s * float(self.mean))


class Deterministic(ServiceDist):
    """Every job takes exactly ``mean`` seconds."""

    kind: Literal["deterministic"] = "deterministic"
    mean: float = Field(..., gt=0, description="seconds")

    def mean_time(self) -> float:
        return float(self.mean)

    def second_moment(self) -> float:
        return float(self.mean) ** 2

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, float(self.mean))

    def laplace(self, s: float) -> float:
        return math.exp(-s * float(self.mean))


class Erlang(ServiceDist):
    """The sum of ``k`` exponential phases of mean ``mean / k`` each (``scv = 1 / k``)."""

    kind: Literal["erlang"] = "erlang"
    mean: float = Field(..., gt=0, description="seconds")
    k: int = Field(..., ge=1, le=10_000, description="phases")

    def mean_time(self) -> float:
        return float(self.mean)

    def second_moment(self) -> float:
        return float(self.mean) ** 2 * (1.0 + 1.0 / self.k)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.gamma(float(self.k), float(self.mean) / self.k, n)

    def laplace(self, s: float) -> float:
        return (1.0 + s * float(self.mean) / self.k) ** (-self.k)


class HyperExponential(ServiceDist):
    """With probability ``probs[i]`` an exponential of mean ``means[i]`` seconds.

    Or ``mean`` and ``scv`` (>= 1): two phases with balanced means (each phase carries half
    the mean), ``p_1 = (1 + sqrt((scv - 1) / (scv + 1))) / 2``, ``m_i = mean / (2 p_i)``.
    """

    kind: Literal["hyperexponential"] = "hyperexponential"
    means: tuple[float, ...] | None = None
    probs: tuple[float, ...] | None = None
    mean: float | None = Field(None, gt=0, description="seconds")
    scv: float | None = Field(None, ge=1, description="squared coefficient of variation")

    @model_validator(mode="after")
    def _one_form(self) -> HyperExponential:
        phases = self.means is not None or self.probs is not None
        moments = self.mean is not None or self.scv is not None
        if phases == moments:
            raise SpecError(
                "means" if phases else "mean",
                "give either means and probs (the phases) or mean and scv",
                "remove one form" if phases else "add means and probs, or mean and scv",
            )
        if phases:
            if self.means is None or self.probs is None:
                missing = "probs" if self.probs is None else "means"
                raise SpecError(missing, "missing", f"give {missing} with one entry per phase")
            if len(self.means) != len(self.probs) or not self.means:
                raise SpecError(
                    "probs",
                    f"{len(self.probs)} probabilities for {len(self.means)} phase means",
                    "give one probability per phase",
                )
            if min(self.means) <= 0:
                raise SpecError("means", f"{min(self.means)!r} is not > 0 seconds", "fix it")
            if min(self.probs) < 0 or abs(math.fsum(self.probs) - 1.0) > 1e-9:
                raise SpecError(
                    "probs", f"{list(self.probs)} are not probabilities summing to 1", "fix them"
                )
        elif self.mean is None or self.scv is None:
            missing = "scv" if self.scv is None else "mean"
            raise SpecError(missing, "missing", f"give {missing} with the other")
        return self

    @property
    def phases(self) -> tuple[np.ndarray, np.ndarray]:
        """``(means, probs)`` of the phases (seconds, probabilities)."""
        if self.means is not None and self.probs is not None:
            return np.asarray(self.means, dtype=float), np.asarray(self.probs, dtype=float)
        c2, m = float(self.scv), float(self.mean)  # type: ignore[arg-type]
        p1 = 0.5 * (1.0 + math.sqrt((c2 - 1.0) / (c2 + 1.0)))
        probs = np.array([p1, 1.0 - p1])
        return m / (2.0 * probs), probs

    def mean_time(self) -> float:
        means, probs = self.phases
        return float(means @ probs)

    def second_moment(self) -> float:
        means, probs = self.phases
        return float(2.0 * (means * means) @ probs)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        means, probs = self.phases
        cdf = np.cumsum(probs)
        cdf[-1] = 1.0
        phase = np.searchsorted(cdf, rng.random(n), side="right")
        return rng.exponential(1.0, n) * means[phase]

    def laplace(self, s: float) -> float:
        means, probs = self.phases
        return float(probs @ (1.0 / (1.0 + s * means)))


class LogNormal(ServiceDist):
    """``S = exp(N(mu, sigma^2))`` with ``mu`` set so that ``E[S] = mean`` seconds."""

    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(..., gt=0, description="seconds")
    sigma: float = Field(..., gt=0, le=5, description="standard deviation of log S")

    def mean_time(self) -> float:
        return float(self.mean)

    def second_moment(self) -> float:
        return float(self.mean) ** 2 * math.exp(float(self.sigma) ** 2)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        s = float(self.sigma)
        return rng.lognormal(math.log(float(self.mean)) - 0.5 * s * s, s, n)

    def laplace(self, s: float) -> float:
        """By Gauss-Hermite quadrature over ``log S`` (80 nodes)."""
        sigma = float(self.sigma)
        x, w = np.polynomial.hermite_e.hermegauss(80)
        values = np.exp(math.log(float(self.mean)) - 0.5 * sigma * sigma + sigma * x)
        return float(w @ np.exp(-s * values) / math.sqrt(2.0 * math.pi))


def _positive(value: float) -> bool:
    """A service time of a CSV column: > 0 seconds."""
    return value > 0


class Empirical(ServiceDist):
    """Resample observed service times (seconds): ``values`` inline, or a ``column`` of a CSV
    ``path``; each draw picks one of them uniformly."""

    kind: Literal["empirical"] = "empirical"
    values: tuple[float, ...] | None = None
    path: str | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Empirical:
        check_sample_source(self.values, self.path, self.column, "the service times (s)")
        if self.values is not None:
            if min(self.values) <= 0:
                raise SpecError(
                    "values", f"{min(self.values)!r} is not a time > 0 s", "give seconds > 0"
                )
        else:
            self.observed()  # a bad file is refused with the spec
        return self

    def observed(self) -> np.ndarray:
        """The observed service times (seconds), read from the CSV if given by path."""
        if self.values is not None:
            return np.asarray(self.values, dtype=float)
        try:
            values = read_column(Path(str(self.path)), str(self.column), _positive, "a time > 0 s")
        except SpecError as err:  # name the config key, keep the file location in the text
            raise SpecError("path", f"{err.field}: {err.problem}", err.fix) from None
        return np.asarray(values, dtype=float)

    def mean_time(self) -> float:
        return float(self.observed().mean())

    def second_moment(self) -> float:
        obs = self.observed()
        return float((obs * obs).mean())

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        obs = self.observed()
        return obs[rng.integers(len(obs), size=n)]

    def laplace(self, s: float) -> float:
        return float(np.exp(-s * self.observed()).mean())


SERVICE_KINDS: dict[str, type[ServiceDist]] = {}
"""The registered service distributions by ``kind`` (registration order)."""


def register_service(spec: type[ServiceDist]) -> type[ServiceDist]:
    """Make ``spec`` (a :class:`ServiceDist` with a ``Literal`` kind default) valid as a
    class's ``service`` in network files; registering a kind again replaces it."""
    kind = spec.model_fields["kind"].default
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{spec.__name__}.kind needs a Literal default, e.g. kind: Literal['x']")
    SERVICE_KINDS[kind] = spec
    return spec


def unregister_service(kind: str) -> None:
    """Forget the service distribution ``kind`` (a no-op for an unknown kind)."""
    SERVICE_KINDS.pop(kind, None)


for _spec in (Exponential, Deterministic, Erlang, HyperExponential, LogNormal, Empirical):
    register_service(_spec)


def parse_service(value: Any) -> ServiceDist:
    """A service distribution from a mapping (``kind`` defaults to ``exponential``) or a spec.

    Raises :class:`SpecError` naming the field (``kind``, ``mean``, an unknown key) and the fix.
    """
    if isinstance(value, ServiceDist):
        return value
    if not isinstance(value, dict):
        raise SpecError(
            "", f"expected a mapping, got {value!r}", "give e.g. {kind: exponential, mean: 0.5}"
        )
    kind = value.get("kind", "exponential")
    spec = SERVICE_KINDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise SpecError(
            "kind",
            f"unknown service distribution {kind!r}",
            f"use one of {', '.join(SERVICE_KINDS)}",
        )
    return build(spec, value)
