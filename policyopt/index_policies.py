"""Parametric index policies: an engine orders its classes by a per-class index with
parameters, so that the parameters can be tuned by simulation (``policyopt tune``,
``docs/policies.md``).

* ``weighted-pressure:w_1,...,w_K``: maximum pressure with a weight per class, index
  ``w_k r_k (z_k - sum_l P_kl z_l)`` (all weights 1: exactly ``max-pressure``);
* ``linear:a_1,b_1,...,a_K,b_K``: index ``a_k z_k + b_k``, a linear index on the number of
  jobs of the class (``a_k = h_k r_k``, ``b_k = 0``: the c-mu rule on queue lengths).

``z_k`` counts the jobs of class ``k`` in the network, ``r_k = 1 / w_k`` the jobs of class
``k`` one unit of engine capacity completes, ``P`` the routing matrix, ``h_k`` the holding
cost. The largest index goes first; ties go to the smaller class index. The number of
parameters must match the network's classes, which is checked when the policy meets its
network (one-line error naming the policy).
"""

from __future__ import annotations

import math

from policyopt.errors import SpecError
from policyopt.model.network import NetworkSpec
from policyopt.policies import MaxPressure, NetworkView, Policy


def parse_numbers(name: str, arg: str) -> list[float]:
    """The comma-separated finite numbers of ``name:arg`` (SpecError otherwise)."""
    try:
        values = [float(x) for x in arg.split(",")]
    except ValueError:
        raise SpecError(
            "policy", f"'{name}:{arg}': not a comma-separated list of numbers", ""
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise SpecError("policy", f"'{name}:{arg}': numbers must be finite", "")
    return values


def format_numbers(values: list[float]) -> str:
    """Numbers as a policy argument: ``repr`` precision, so a spec reloads exactly."""
    return ",".join(repr(float(v)) for v in values)


class WeightedPressure(MaxPressure):
    """Maximum pressure with a weight per class (``weighted-pressure:w_1,...,w_K``)."""

    def __init__(self, weights: list[float]) -> None:
        super().__init__()
        if any(w < 0 for w in weights):
            raise SpecError("policy", "weighted-pressure weights must be >= 0", "")
        self.weights = weights
        self.name = "weighted-pressure:" + format_numbers(weights)

    @classmethod
    def from_arg(cls, arg: str) -> WeightedPressure:
        return cls(parse_numbers("weighted-pressure", arg))

    def bind(self, net: NetworkSpec) -> None:
        _check_count(self.name, len(self.weights), net.topology.n_classes, "weights")
        super().bind(net)

    def _rates(self, view: NetworkView) -> list[float]:
        """``w_k r_k``: the pressure of class ``k`` weighted."""
        return [w * r for w, r in zip(self.weights, view.rate.tolist(), strict=True)]


class LinearIndex(Policy):
    """A linear index on the class's job count (``linear:a_1,b_1,...,a_K,b_K``)."""

    state_feedback = True

    def __init__(self, coefficients: list[float]) -> None:
        if len(coefficients) % 2:
            raise SpecError(
                "policy",
                f"linear:{format_numbers(coefficients)} has {len(coefficients)} numbers",
                "give two per class: a_1,b_1,...,a_K,b_K",
            )
        self.a = coefficients[0::2]
        self.b = coefficients[1::2]
        self.name = "linear:" + format_numbers(coefficients)

    @classmethod
    def from_arg(cls, arg: str) -> LinearIndex:
        return cls(parse_numbers("linear", arg))

    def bind(self, net: NetworkSpec) -> None:
        _check_count(self.name, len(self.a), net.topology.n_classes, "pairs (a_k, b_k)")

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The engine's classes by ``a_k z_k + b_k``, largest first (ties by class index)."""
        z = view.jobs.tolist()
        a, b = self.a, self.b
        ranked = sorted((-(a[k] * z[k] + b[k]), k) for k in view.classes_at[engine])
        return [k for _, k in ranked]


def _check_count(name: str, have: int, classes: int, what: str) -> None:
    if have != classes:
        raise SpecError(
            "policy",
            f"{name} has {have} {what} and the network has {classes} classes",
            f"give one per class ({classes})",
        )
