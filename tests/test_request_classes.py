"""Scenarios with several request classes: validation, the one-engine network they run as,
and ``--policy`` on the command line with per-class metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policyopt.cli import main
from policyopt.errors import SpecError
from policyopt.jsonout import to_json
from policyopt.model import Scenario, build
from policyopt.model.network import scenario_network
from policyopt.sim.network_sim import NetworkSimulator, simulate_network

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chat_and_documents.yaml"

TWO = {
    "chat": {
        "arrival": {"kind": "poisson", "rate": 6.0},
        "prompt": {"kind": "constant", "value": 100},
        "output": {"kind": "constant", "value": 40},
    },
    "docs": {
        "arrival": {"kind": "deterministic", "rate": 0.5},
        "prompt": {"kind": "constant", "value": 1500},
        "max_prompt_len": 2048,
        "output": {"kind": "constant", "value": 20},
        "holding_cost": 0.1,
    },
}


def test_classes_become_a_one_engine_network() -> None:
    sc = build(Scenario, {"classes": TWO, "scheduler": "orca"})
    net = scenario_network(sc)
    topo = net.topology
    assert topo.engines == ("engine",) and topo.classes == ("chat", "docs")
    assert topo.holding_cost == (1.0, 0.1)
    assert topo.alpha == (6.0, 0.5)
    assert net.engines["engine"].scheduler.name == "orca"
    assert topo.work == pytest.approx((140.0, 1520.0))


def test_a_class_priority_orders_prefill() -> None:
    """Chat first: chat's time to first token drops, documents' rises (same arrivals)."""
    net = scenario_network(build(Scenario, {"classes": TWO}))
    first = simulate_network(net, "priority:chat>docs", horizon=600.0, seed=3)
    last = simulate_network(net, "priority:docs>chat", horizon=600.0, seed=3)
    assert first.classes["chat"]["ttft_mean"] < last.classes["chat"]["ttft_mean"]
    assert first.classes["docs"]["ttft_mean"] > last.classes["docs"]["ttft_mean"]
    for res in (first, last):
        for c in res.classes.values():
            assert c["ttft_mean"] <= c["latency_mean"]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"classes": TWO, "workload": {}}, "classes", "not both"),
        ({"classes": {}}, "classes", "no request class"),
        ({"classes": {"a": {"arrival": {"kind": "trace", "path": "x.csv"}}}}, "classes.a", ""),
        ({"classes": {"a": {"rate": 3}}}, "classes.a.rate", "unknown key"),
        ({"classes": {"a": {"holding_cost": -1}}}, "classes.a.holding_cost", ""),
        (
            {"classes": {"a": {"max_prompt_len": 4096}}, "scheduler": "vllm"},
            "engine.token_budget",
            "class 'a'",
        ),
    ],
)
def test_bad_classes_name_the_field(data: dict, field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        build(Scenario, data)
    assert err.value.field.startswith(field)
    assert words in str(err.value)


def test_simulate_with_policy_reports_each_class(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "simulate",
            str(EXAMPLE),
            "--policy",
            "priority:chat>documents",
            "--horizon",
            "120",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "priority:chat>documents" and out["horizon"] == 120
    assert set(out["classes"]) == {"chat", "documents"}
    for c in out["classes"].values():
        assert c["throughput"] > 0 and c["ttft_mean"] > 0 and c["latency_p99"] > 0


def test_compare_policies_on_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", str(EXAMPLE), "--policies", "fcfs,priority:chat>documents"]
    code = main([*args, "--horizon", "60", "--out", str(tmp_path), "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["runs"]
    assert [r["policy"] for r in rows] == ["fcfs", "priority:chat>documents"]


def test_policy_needs_classes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--policy", "fcfs", "--horizon", "10"]) == 2
    err = capsys.readouterr().err
    assert "--policy" in err and "classes" in err
    assert main(["compare", str(EXAMPLE), "--schedulers", "orca"]) == 2
    assert "--schedulers" in capsys.readouterr().err


def test_unknown_class_in_a_priority(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(EXAMPLE), "--policy", "priority:chat>pdfs"]) == 2
    err = capsys.readouterr().err
    assert "policy" in err and "'pdfs'" in err and "Traceback" not in err


def test_simulate_refuses_classes_and_simulate_classes_runs_them() -> None:
    from policyopt.sim import simulate, simulate_classes

    sc = build(Scenario, {"classes": TWO, "run": {"horizon_s": 200, "warmup_s": 50, "seed": 2}})
    with pytest.raises(SpecError) as err:
        simulate(sc)
    assert err.value.field == "classes" and "simulate_classes" in err.value.fix
    res = simulate_classes(sc, "priority:chat>docs")
    assert (res.horizon, res.warmup, res.seed) == (200, 50, 2)
    sim = NetworkSimulator(
        scenario_network(sc), "priority:chat>docs", horizon=200, warmup=50, seed=2, samples=2000
    )
    assert res.summary() == sim.run().result().summary()


def test_the_file_warmup_reaches_the_command_line_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "classes.yaml"
    cfg.write_text(
        "classes:\n  chat: {arrival: {kind: poisson, rate: 4}}\n"
        "  docs: {arrival: {kind: poisson, rate: 1}}\n"
        "run: {horizon_s: 100, warmup_s: 30, seed: 5}\n"
    )
    assert main(["simulate", str(cfg), "--policy", "fcfs", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["horizon"], out["warmup"], out["seed"]) == (100, 30, 5)
    # the command line runs exactly what the Python call does
    from policyopt.model import load_scenario
    from policyopt.sim import simulate_classes

    want = json.loads(to_json(simulate_classes(load_scenario(cfg), "fcfs").summary()))
    assert out == want
