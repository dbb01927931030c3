"""Service-time distributions (``policyopt.model.service``): moments, samples, the registry,
files, and what a network does with them (traffic loads, the exponential draws unchanged)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from policyopt.errors import SpecError
from policyopt.model import NetworkSpec, build
from policyopt.model.service import (
    SERVICE_KINDS,
    Deterministic,
    ServiceDist,
    parse_service,
    register_service,
    unregister_service,
)
from policyopt.solvers.traffic import traffic

SPECS: list[dict[str, Any]] = [
    {"kind": "exponential", "mean": 0.7},
    {"kind": "deterministic", "mean": 0.7},
    {"kind": "erlang", "mean": 0.7, "k": 3},
    {"kind": "hyperexponential", "mean": 0.7, "scv": 5.0},
    {"kind": "hyperexponential", "means": [0.2, 2.0], "probs": [0.7, 0.3]},
    {"kind": "lognormal", "mean": 0.7, "sigma": 0.6},
    {"kind": "empirical", "values": [0.1, 0.4, 1.6]},
]


@pytest.mark.parametrize("data", SPECS, ids=lambda d: d["kind"])
def test_samples_have_the_stated_moments(data: dict[str, Any]) -> None:
    spec = parse_service(data)
    x = spec.sample(np.random.default_rng(0), 400_000)
    assert x.dtype == np.float64 and (x > 0).all()
    assert x.mean() == pytest.approx(spec.mean_time(), rel=0.01)
    assert (x * x).mean() == pytest.approx(spec.second_moment(), rel=0.04)
    assert spec.squared_cv() == pytest.approx(spec.second_moment() / spec.mean_time() ** 2 - 1)


def test_balanced_hyperexponential_hits_its_scv() -> None:
    spec = parse_service({"kind": "hyperexponential", "mean": 2.0, "scv": 9.0})
    assert spec.mean_time() == pytest.approx(2.0) and spec.squared_cv() == pytest.approx(9.0)
    means, probs = spec.phases  # type: ignore[attr-defined]
    assert means @ probs == pytest.approx(2.0)
    assert means[0] * probs[0] == pytest.approx(means[1] * probs[1])  # balanced means


def test_kind_defaults_to_exponential_and_draws_as_before() -> None:
    """The exponential draws are those of ``rng.exponential(mean, n)``, as before the other
    kinds existed (fixed-seed results of existing networks are unchanged)."""
    spec = parse_service({"mean": 0.5})
    assert spec.kind == "exponential"
    a = spec.sample(np.random.default_rng(3), 1024)
    b = np.random.default_rng(3).exponential(0.5, 1024)
    assert np.array_equal(a, b)


def test_empirical_from_a_csv(tmp_path: Path) -> None:
    (tmp_path / "svc.csv").write_text("seconds,other\n0.5,x\n1.5,y\n")
    spec = parse_service(
        {"kind": "empirical", "path": str(tmp_path / "svc.csv"), "column": "seconds"}
    )
    assert spec.mean_time() == pytest.approx(1.0) and spec.second_moment() == pytest.approx(1.25)
    (tmp_path / "bad.csv").write_text("seconds\n0.5\n-1\n")
    with pytest.raises(SpecError, match=r"bad\.csv line 3"):
        parse_service({"kind": "empirical", "path": str(tmp_path / "bad.csv"), "column": "seconds"})


def test_the_loads_use_the_mean_and_the_servers() -> None:
    net = build(
        NetworkSpec,
        {
            "engines": {"s": {"kind": "station", "servers": 2}},
            "classes": {"a": {"engine": "s", "service": SPECS[4]}},
            "workflows": [
                {
                    "name": "w",
                    "arrival": {"kind": "poisson", "rate": 1.0},
                    "entry": "a",
                    "after": {"a": "exit"},
                }
            ],
        },
    )
    flow = traffic(net)
    assert flow.mu[0] == 2.0
    assert flow.loads[0] == pytest.approx((0.7 * 0.2 + 0.3 * 2.0) / 2)
    # a network round-trips through its dump (with_rates rebuilds it)
    again = net.scaled(0.5)
    assert again.classes["a"].service == net.classes["a"].service


def test_a_registered_kind_is_valid_in_files() -> None:
    class Twice(Deterministic):
        """A toy: every job takes twice ``mean`` seconds."""

        kind: Literal["twice"] = "twice"  # type: ignore[assignment]

        def mean_time(self) -> float:
            return 2.0 * float(self.mean)

    register_service(Twice)
    try:
        spec = parse_service({"kind": "twice", "mean": 1.5})
        assert isinstance(spec, ServiceDist) and spec.mean_time() == 3.0
        assert "twice" in SERVICE_KINDS
    finally:
        unregister_service("twice")
    with pytest.raises(SpecError, match="unknown service distribution 'twice'"):
        parse_service({"kind": "twice", "mean": 1.5})
