"""``policyopt benchmark`` (``docs/benchmark.md``): the instances and their references, the
runs and their pooled cells, the files, and the same numbers with one process or two."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from policyopt.benchmark import (
    CRISS_CROSS_INSTANCES,
    INSTANCES,
    aggregate,
    get_instance,
    plan,
    run_one,
)
from policyopt.benchmark.instances import criss_cross_continuing_jobs, highest_index_first
from policyopt.cli import main
from policyopt.errors import SpecError
from policyopt.policies import NetworkView, Policy, register_policy, unregister_policy
from policyopt.sim.network_sim import simulate_network
from policyopt.solvers.traffic import traffic


def test_criss_cross_instances_and_their_references() -> None:
    assert (
        tuple(f"criss-cross-{r}" for r in ("il", "bl", "im", "bm", "ih", "bh"))
        == CRISS_CROSS_INSTANCES
    )
    loads = {
        name: tuple(traffic(get_instance(name).build()).loads) for name in CRISS_CROSS_INSTANCES
    }
    assert loads["criss-cross-il"] == pytest.approx((0.3, 0.2))
    assert loads["criss-cross-bh"] == pytest.approx((0.9, 0.9))
    exact = {name: INSTANCES[name].reference("c-mu").value for name in CRISS_CROSS_INSTANCES}  # type: ignore[union-attr]
    assert exact["criss-cross-bh"] == pytest.approx(18.0)
    assert exact["criss-cross-ih"] == pytest.approx(10.5)
    assert exact["criss-cross-bm"] == pytest.approx(3.0)
    assert exact["criss-cross-il"] == pytest.approx(0.15 / 0.85 + (0.3 / 0.7 - 0.15 / 0.85) + 0.25)
    for name in CRISS_CROSS_INSTANCES:
        inst = INSTANCES[name]
        assert inst.optimum is not None and inst.optimum.kind == "optimal"
        assert inst.optimum.value < exact[name]  # the optimum beats the continuing priority
        assert "Dai and Gluzman" in inst.optimum.source
        assert "preemptive-resume" in inst.optimum.assumptions
        for policy in ("c-mu", "priority:c1>c3", "lbfs", "fbfs"):
            assert inst.reference(policy).kind == "exact"  # type: ignore[union-attr]
        assert inst.reference("max-pressure") is None
    assert criss_cross_continuing_jobs(0.9, 1.0) == pytest.approx(18.0)


def test_other_instances() -> None:
    re2 = get_instance("reentrant-2")
    assert re2.reference("lbfs").value == 15.911  # type: ignore[union-attr]
    assert re2.reference("fcfs").kind == "reported"  # type: ignore[union-attr]
    six = get_instance("extended-six-class-2")
    assert six.reference(highest_index_first(2)).value == 15.749  # type: ignore[union-attr]
    assert highest_index_first(2) == "priority:c6>c5>c4>c3>c2>c1"
    lk = get_instance("lu-kumar")  # a library network, no references
    assert lk.references == {} and lk.optimum is None and lk.build().name == "lu-kumar"
    with pytest.raises(SpecError, match="no benchmark instance or library network named 'nope'"):
        get_instance("nope")


def test_runs_and_pooled_cells() -> None:
    runs = plan(["criss-cross-bm"], ["c-mu", "fcfs"], [0, 1], 4000.0)
    assert [(r.policy, r.seed) for r in runs] == [
        ("c-mu", 0),
        ("c-mu", 1),
        ("fcfs", 0),
        ("fcfs", 1),
    ]
    outcomes = [run_one(r) for r in runs]
    res = simulate_network(get_instance("criss-cross-bm").build(), "c-mu", horizon=4000.0, seed=1)
    assert outcomes[1].mean_jobs == res.mean_jobs and outcomes[1].verdict == res.verdict
    assert len(outcomes[0].windows) == 20
    cells = aggregate(outcomes, {"criss-cross-bm": INSTANCES["criss-cross-bm"]})
    assert [(c.policy, c.seeds) for c in cells] == [("c-mu", (0, 1)), ("fcfs", (0, 1))]
    cmu = cells[0]
    assert cmu.mean == pytest.approx(np.mean([o.mean_jobs for o in outcomes[:2]]))
    assert cmu.low < cmu.mean < cmu.high
    assert cmu.reference is not None and cmu.inside == (cmu.low <= 3.0 <= cmu.high)
    assert cmu.gap == pytest.approx(cmu.mean / 2.829 - 1)
    assert cells[1].reference is None and cells[1].inside is None
    single = aggregate(outcomes[:1], {"criss-cross-bm": INSTANCES["criss-cross-bm"]})[0]
    assert (single.low, single.high) == (outcomes[0].low, outcomes[0].high)


def test_light_regimes_hold_their_exact_value() -> None:
    """Four seeds of 100,000 s: the pooled interval holds the exact continuing priority."""
    for name in ("criss-cross-il", "criss-cross-bl"):
        outcomes = [run_one(r) for r in plan([name], ["c-mu"], range(4), 100_000.0)]
        (cell,) = aggregate(outcomes, {name: INSTANCES[name]})
        assert cell.inside, (name, cell.mean, cell.low, cell.high)
        assert cell.verdict == "stable" and cell.little_gap < 0.01


def test_the_command_writes_its_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["benchmark", "criss-cross-bh", "criss-cross-il", "--policies", "c-mu,max-pressure"]
    argv += ["--replications", "2", "--horizon", "3000", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    text = capsys.readouterr().out
    assert "8 of 8 runs" in text and "18 (exact)" in text and "15.23" in text
    with (tmp_path / "a" / "benchmark.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["instance"], r["policy"]) for r in rows] == [
        ("criss-cross-bh", "c-mu"),
        ("criss-cross-bh", "max-pressure"),
        ("criss-cross-il", "c-mu"),
        ("criss-cross-il", "max-pressure"),
    ]
    assert rows[0]["reference_kind"] == "exact" and rows[1]["reference"] == ""
    assert float(rows[1]["optimum"]) == 15.228
    with (tmp_path / "a" / "runs.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 8
    doc = json.loads((tmp_path / "a" / "benchmark.json").read_text())
    assert doc["seeds"] == [0, 1] and doc["horizon"] == 3000 and doc["complete"] is True
    ref = doc["instances"]["criss-cross-bh"]["references"]["c-mu"]
    assert ref["kind"] == "exact" and "Burke" in ref["source"] and ref["assumptions"]
    assert (tmp_path / "a" / "benchmark.png").stat().st_size > 0
    # two processes: the same numbers
    assert main([*argv, "--jobs", "2", "--json", "--out", str(tmp_path / "b")]) == 0
    two = json.loads(capsys.readouterr().out)
    assert [c["mean_jobs"] for c in two["cells"]] == [c["mean_jobs"] for c in doc["cells"]]
    # the folder holds results now: refused without --overwrite
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    assert "already holds results" in capsys.readouterr().err


def test_list_shows_the_references(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["benchmark", "--list"]) == 0
    text = capsys.readouterr().out
    assert "criss-cross-bh" in text and "optimum 15.228" in text and "reentrant-7" in text
    assert main(["benchmark", "--list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["criss-cross-im"]["optimum"]["value"] == 2.084


class Boom(Policy):
    """A toy policy that fails at its first decision."""

    name = "test-boom"

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        raise RuntimeError("boom")


def test_a_failed_run_is_reported_and_the_others_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_policy("test-boom", Boom)
    try:
        argv = ["benchmark", "criss-cross-il", "--policies", "c-mu,test-boom"]
        argv += ["--replications", "1", "--horizon", "500", "--no-progress", "--json"]
        assert main([*argv, "--out", str(tmp_path)]) == 1
    finally:
        unregister_policy("test-boom")
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert [c["policy"] for c in doc["cells"]] == ["c-mu"]
    (failure,) = doc["failures"]
    assert failure["policy"] == "test-boom" and "RuntimeError: boom" in failure["error"]
    assert "failed: criss-cross-il test-boom seed 0" in captured.err
