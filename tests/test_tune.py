"""Tuning a parametric policy by simulation: the search finds the optimal order where theory
knows it, a tuned spec replays its numbers, a rerun resumes, bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policyopt.cli import main
from policyopt.errors import SpecError
from policyopt.model.network import NetworkSpec, load_network
from policyopt.model.networks_library import resolve_network
from policyopt.sim.network_sim import NetworkSimulator
from policyopt.tune import TuneSettings, tune

TWO_CLASS = (
    "name: two-class\n"
    "engines: {s: {kind: station}}\n"
    "classes:\n"
    "  a: {engine: s, service: {kind: exponential, mean: 1.0}, holding_cost: 1.0}\n"
    "  b: {engine: s, service: {kind: exponential, mean: 2.0}, holding_cost: 3.0}\n"
    "workflows:\n"
    "  - {name: wa, arrival: {kind: poisson, rate: 0.3}, entry: a, after: {a: exit}}\n"
    "  - {name: wb, arrival: {kind: poisson, rate: 0.25}, entry: b, after: {b: exit}}\n"
)
"""An M/M/1 station with two classes at load 0.8: c-mu is 1 x 1 = 1 for a and 3 x 0.5 = 1.5
for b, so serving b first (preemptive) is optimal."""

SETTINGS = TuneSettings(horizon=20000.0, train=(0, 1), val=(10, 11), test=(20, 21), budget=5)


@pytest.fixture
def two_class(tmp_path: Path) -> NetworkSpec:
    path = tmp_path / "two.yaml"
    path.write_text(TWO_CLASS)
    return load_network(path)


def test_local_search_finds_the_c_mu_order(two_class: NetworkSpec) -> None:
    """Started from the wrong order (a first), the search swaps to b first, the c-mu rule,
    and the report shows it better than the start on the test seeds."""
    res = tune(two_class, "priority", SETTINGS, start=[0, 1])
    assert res.start == "priority:a>b"
    assert res.spec == "priority:b>a"
    assert res.test["priority:b>a"]["mean"] < res.test["priority:a>b"]["mean"]
    assert [s for s, _ in res.trace] == ["priority:a>b", "priority:b>a"]


def test_a_tuned_spec_replays_its_validation_numbers(
    two_class: NetworkSpec, tmp_path: Path
) -> None:
    res = tune(two_class, "pressure", SETTINGS, out=tmp_path / "t")
    assert res.spec.startswith("weighted-pressure:")
    again = [
        NetworkSimulator(two_class, res.spec, horizon=SETTINGS.horizon, seed=s)
        .run()
        .result()
        .holding_cost
        for s in SETTINGS.val
    ]
    assert sum(again) / len(again) == res.validation[res.spec]
    # weights all 1 are maximum pressure itself: the same run
    mp = NetworkSimulator(two_class, "max-pressure", horizon=500.0, seed=3).run().result()
    wp = NetworkSimulator(two_class, "weighted-pressure:1,1", horizon=500.0, seed=3).run().result()
    assert mp.mean_jobs == wp.mean_jobs


def test_a_rerun_resumes_from_the_evaluations_kept(two_class: NetworkSpec, tmp_path: Path) -> None:
    out = tmp_path / "t"
    first = tune(two_class, "linear", SETTINGS, out=out)
    assert first.simulations > 0
    lines = (out / "evaluations.jsonl").read_text().splitlines()
    assert len(lines) == first.simulations
    second = tune(two_class, "linear", SETTINGS, out=out)
    assert second.simulations == 0  # every run was read back
    assert second.spec == first.spec and second.test == first.test


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rs"
    args = ["tune", "rybko-stolyar", "--family", "priority", "--budget", "3"]
    args += ["--horizon", "300", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "tuned: priority:" in text and "max-pressure" in text
    data = json.loads((out / "tuned.json").read_text())
    assert data["spec"].startswith("priority:") and len(data["search"]) <= 3
    assert (out / "trace.png").stat().st_size > 0 and (out / "tune.csv").exists()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--family", "nope"], "--family"),
        (["--family", "pressure", "--budget", "0"], "--budget"),
        (["--family", "pressure", "--val-seeds", "0,5"], "--train-seeds / --val-seeds"),
        (["--family", "pressure", "--test-seeds", "x"], "--test-seeds"),
    ],
)
def test_bad_input(args: list[str], field: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "rybko-stolyar", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0]


def test_index_with_the_wrong_number_of_weights() -> None:
    net = resolve_network("rybko-stolyar")
    with pytest.raises(SpecError, match="4 classes"):
        NetworkSimulator(net, "weighted-pressure:1,2", horizon=10.0)
    with pytest.raises(SpecError, match="two per class"):
        NetworkSimulator(net, "linear:1,2,3", horizon=10.0)
