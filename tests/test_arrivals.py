"""Arrival processes of network workflows (``policyopt.model.arrivals``): renewal against the
exact GI/M/1 formula, Markov-modulated and piecewise-constant Poisson by their rates and
counts, trace replay by its times, scaling, and Poisson runs unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from policyopt.errors import SpecError
from policyopt.model import NetworkSpec, build
from policyopt.sim.network_sim import NetworkSimulator, simulate_network
from policyopt.solvers.queueing import gim1_jobs
from policyopt.solvers.traffic import traffic


def fed_station(arrival: dict[str, Any], mean: float = 0.1) -> NetworkSpec:
    """One exponential station (mean ``mean`` s) fed by one workflow with ``arrival``."""
    return build(
        NetworkSpec,
        {
            "name": "fed",
            "engines": {"s": {"kind": "station"}},
            "classes": {"a": {"engine": "s", "service": {"mean": mean}}},
            "workflows": [{"name": "w", "arrival": arrival, "entry": "a", "after": {"a": "exit"}}],
        },
    )


def arrival_times(net: NetworkSpec, horizon: float, seed: int = 0) -> np.ndarray:
    sim = NetworkSimulator(net, "fcfs", horizon=horizon, seed=seed, trace=True)
    sim.run()
    return np.array([t for t, what, *_ in sim.trace if what == "start"])  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "law",
    [{"kind": "deterministic"}, {"kind": "erlang", "k": 3}, {"kind": "hyperexponential", "scv": 3}],
    ids=["D/M/1", "E3/M/1", "H2/M/1"],
)
def test_renewal_against_gim1(law: dict[str, Any]) -> None:
    net = fed_station({"kind": "renewal", "rate": 1.0, "law": law}, mean=0.7)
    arrival = net.workflows[0].arrival
    assert arrival.rate == 1.0 and traffic(net).loads[0] == pytest.approx(0.7)
    exact = gim1_jobs(1.0, 0.7, arrival.interarrival().laplace)  # type: ignore[union-attr]
    res = simulate_network(net, "fcfs", horizon=200_000.0)
    lo, hi = res.mean_jobs_ci
    assert lo <= exact <= hi, (exact, res.mean_jobs, lo, hi)
    assert res.little_gap() < 0.01


def test_renewal_with_exponential_law_is_m_m_1() -> None:
    net = fed_station({"kind": "renewal", "rate": 1.0}, mean=0.5)
    gim1 = gim1_jobs(1.0, 0.5, net.workflows[0].arrival.interarrival().laplace)  # type: ignore[union-attr]
    assert gim1 == pytest.approx(1.0)


def test_mmpp_rate_and_burstiness() -> None:
    mmpp = {"kind": "mmpp", "rates": [4.0, 0.5], "holding": [10.0, 30.0]}
    net = fed_station(mmpp)
    assert net.workflows[0].arrival.rate == pytest.approx((40 + 15) / 40)
    times = arrival_times(net, 40_000.0)
    assert len(times) / 40_000.0 == pytest.approx(1.375, rel=0.03)
    counts = np.bincount((times // 10).astype(int))  # arrivals per 10 s
    assert counts.var() / counts.mean() > 3  # over-dispersed: a Poisson process gives 1
    poisson = arrival_times(fed_station({"kind": "poisson", "rate": 1.375}), 40_000.0)
    counts = np.bincount((poisson // 10).astype(int))
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.15)


def test_piecewise_profile_counts() -> None:
    net = fed_station({"kind": "piecewise", "rates": [3.0, 0.0, 1.0], "durations": [10, 5, 5]})
    assert net.workflows[0].arrival.rate == pytest.approx(35 / 20)
    times = arrival_times(net, 20_000.0)
    phase = times % 20.0
    high, idle, low = (phase < 10).sum(), ((phase >= 10) & (phase < 15)).sum(), (phase >= 15).sum()
    assert idle == 0
    assert high / 10_000.0 == pytest.approx(3.0, rel=0.03)  # 1,000 periods of 10 s at 3/s
    assert low / 5_000.0 == pytest.approx(1.0, rel=0.05)


def test_trace_replay(tmp_path: Path) -> None:
    times = np.cumsum(np.random.default_rng(5).exponential(0.5, 400))
    path = tmp_path / "arrivals.csv"
    path.write_text("arrival_s,other\n" + "".join(f"{float(t)!r},x\n" for t in times))
    net = fed_station({"kind": "trace", "path": str(path)})
    assert net.workflows[0].arrival.rate == pytest.approx(400 / times[-1])
    seen = arrival_times(net, float(times[-1]) + 100.0)
    np.testing.assert_allclose(seen, times, rtol=1e-12)  # every arrival, then none
    slow = net.scaled(0.5)  # half the rate: the times stretched twice
    assert slow.workflows[0].arrival.time_scale == pytest.approx(2.0)  # type: ignore[union-attr]
    np.testing.assert_allclose(arrival_times(slow, 2 * float(times[-1]) + 1), 2 * times, rtol=1e-12)
    (tmp_path / "back.csv").write_text("arrival_s\n1.0\n0.5\n")
    with pytest.raises(SpecError, match=r"back\.csv line 3"):
        fed_station({"kind": "trace", "path": str(tmp_path / "back.csv")})


@pytest.mark.parametrize(
    "arrival",
    [
        {"kind": "renewal", "rate": 2.0, "law": {"kind": "lognormal", "sigma": 1.0}},
        {"kind": "mmpp", "rates": [4.0, 0.0], "holding": [1.0, 3.0]},
        {"kind": "piecewise", "rates": [1.0, 3.0], "durations": [2.0, 2.0]},
    ],
    ids=["renewal", "mmpp", "piecewise"],
)
def test_scaling_keeps_the_law(arrival: dict[str, Any]) -> None:
    net = fed_station(arrival)
    rate = net.workflows[0].arrival.rate
    faster = net.scaled(1.5)
    assert faster.workflows[0].arrival.rate == pytest.approx(1.5 * rate)
    assert faster.workflows[0].arrival.kind == arrival["kind"]
    res = simulate_network(faster, "fcfs", horizon=20_000.0)
    flow = res.workflows["w"]
    assert (
        flow["throughput_low"] <= 1.5 * rate * 1.01 and flow["throughput_high"] >= 1.5 * rate * 0.99
    )


def test_poisson_draws_are_unchanged() -> None:
    """A Poisson workflow draws its gaps as before: the same times as drawn by hand."""
    net = fed_station({"kind": "poisson", "rate": 2.0})
    times = arrival_times(net, 300.0, seed=7)
    # the workflow's stream: the first of the seed's spawned streams (workflows, classes,
    # routing); its first block of 1,024 gaps, drawn by hand
    stream = np.random.default_rng(np.random.SeedSequence(7).spawn(3)[0])
    gaps = stream.exponential(0.5, 1024)
    np.testing.assert_allclose(times, np.cumsum(gaps)[: len(times)], rtol=1e-12)


@pytest.mark.parametrize(
    ("arrival", "words"),
    [
        ({"kind": "mmpp", "rates": [1.0, 2.0], "holding": [1.0]}, "1 values for 2 rates"),
        ({"kind": "piecewise", "rates": [0.0, 0.0], "durations": [1, 1]}, "every rate is 0"),
        ({"kind": "piecewise", "rates": [1.0], "durations": [0]}, "not > 0 seconds"),
        ({"kind": "renewal", "rate": 1.0, "law": {"kind": "gamma"}}, "unknown service"),
        ({"kind": "renewal", "rate": 1.0, "law": {"kind": "erlang"}}, "law.k"),
        (
            {"kind": "renewal", "rate": 1.0, "law": {"kind": "erlang", "k": 2, "mean": 3}},
            "1 / rate",
        ),
        ({"kind": "bursty", "rate": 1.0}, "kind"),
    ],
)
def test_bad_arrivals_name_their_field(arrival: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError, match="workflows") as err:
        fed_station(arrival)
    assert words in str(err.value)


def test_capacity_warns_when_a_peak_overloads_an_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One station, mean service 0.5 s; a profile of 2.4 requests/s for 100 s then 0.4 for
    300 s has a long-run rate of 0.9 (load 0.45) and a peak load of 1.2: capacity says so, in
    the text and in the JSON; a steady Poisson workflow at the same rate gets no warning."""
    from policyopt.cli import main

    text = (
        "name: peaky\n"
        "engines: {s: {kind: station}}\n"
        "classes: {a: {engine: s, service: {kind: exponential, mean: 0.5}}}\n"
        "workflows:\n"
        "  - name: w\n"
        "    arrival: {kind: piecewise, rates: [2.4, 0.4], durations: [100, 300]}\n"
        "    entry: a\n"
        "    after: {a: exit}\n"
    )
    path = tmp_path / "peaky.yaml"
    path.write_text(text)
    assert main(["capacity", str(path)]) == 0
    out = capsys.readouterr().out
    assert "workflow 'w' peaks at 2.4 requests/s (long-run 0.9)" in out
    assert "at load 1.200 (long-run 0.450)" in out
    assert main(["capacity", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["peak_overloads"][0]["peak_load"] == pytest.approx(1.2)
    steady = tmp_path / "steady.yaml"
    steady.write_text(
        text.replace(
            "{kind: piecewise, rates: [2.4, 0.4], durations: [100, 300]}",
            "{kind: poisson, rate: 0.9}",
        )
    )
    assert main(["capacity", str(steady)]) == 0
    assert "warning" not in capsys.readouterr().out
