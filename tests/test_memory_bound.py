"""The memory bound of a limited KV cache (Little's law): closed forms, the simulator, the
static planning LP's memory constraints, and the command line.

The reference engine of the exact checks has a constant batch time, ``t(n) = 50 ms`` for every
``n <= b = 512`` (a staircase with one step), so the fluid batch time is exact. With 64-token
prompts and 32-token outputs in blocks of 16, a request holds (by hand)

    64 (prefill batch) + 16 x 80 (decode batches 1..16) + 16 x 96 (17..32) = 2880

token-batches, i.e. 2880 x 0.05 = 144 KV-token-seconds; with M = 7200 tokens memory binds at
``lambda_mem = 7200 / 144 = 50`` requests/s, against ``lambda* = 512 / 0.05 / 96 = 106.67``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from policyopt import Scenario
from policyopt.cli import main
from policyopt.errors import SpecError
from policyopt.model import EngineSpec, NetworkSpec, Workload, build, get_network
from policyopt.model.network import scenario_network
from policyopt.sim.run import simulate_classes
from policyopt.solvers.memory_bound import kv_token_batches, memory_bound, network_memory
from policyopt.solvers.static_planning import StaticPlanningLP, static_plan
from policyopt.solvers.traffic import traffic
from tests.helpers import assert_one_line_error

FLAT_50MS = {"kind": "staircase", "c_ms": 0.0, "a_ms": 50.0, "b0": 512}
"""Every batch of up to 512 tokens takes 50 ms."""
CONSTANT_64_32 = {
    "prompt": {"kind": "constant", "value": 64},
    "output": {"kind": "constant", "value": 32},
}


def flat_scenario(
    kv_tokens: int, rate: float, lengths: dict[str, Any] | None = None, horizon: float = 2000.0
) -> Scenario:
    """The 50 ms engine with ``kv_tokens`` of KV cache (blocks of 16) at ``rate`` requests/s."""
    lengths = CONSTANT_64_32 if lengths is None else lengths
    return build(
        Scenario,
        {
            "engine": {"batch_time": FLAT_50MS, "kv_cache": {"tokens": kv_tokens}},
            "workload": {**lengths, "arrival": {"kind": "poisson", "rate": rate}},
            "run": {"horizon_s": horizon, "seed": 1},
        },
    )


def engine_with(kv_cache: dict[str, Any] | None, **fields: Any) -> EngineSpec:
    return build(EngineSpec, {"kv_cache": kv_cache, **fields})


# ----------------------------------------------------------------------------- closed forms


def test_token_batches_of_constant_lengths_by_hand() -> None:
    w = build(Workload, CONSTANT_64_32)
    # (d + 1) p + d (d + 1) / 2 = 33 * 64 + 32 * 33 / 2 without blocks
    assert kv_token_batches(w, 1) == 2640.0
    assert kv_token_batches(w, 16) == 64 + 16 * 80 + 16 * 96 == 2880
    # the simulator's kv_mean counts computed tokens: 0, then 64 .. 95 during the decodes
    assert kv_token_batches(w, 16, "computed") == 32 * 64 + 32 * 31 / 2 == 2544


def test_token_batches_average_over_independent_lengths_and_over_trace_pairs(
    tmp_path: Path,
) -> None:
    w = build(
        Workload,
        {
            "prompt": {"kind": "uniform", "low": 1, "high": 2},
            "output": {"kind": "empirical", "values": [1, 3]},
        },
    )
    # h(p, d) = (d + 1) p + d (d + 1) / 2: h(1,1) = 3, h(1,3) = 10, h(2,1) = 5, h(2,3) = 14
    assert kv_token_batches(w, 1) == pytest.approx((3 + 10 + 5 + 14) / 4, abs=1e-12)
    # blocks of 2 tokens hold 2, 2, 4, 4, 6 for 1..5 tokens: 4, 12, 6, 16
    assert kv_token_batches(w, 2) == pytest.approx((4 + 12 + 6 + 16) / 4, abs=1e-12)
    # a trace keeps its pairs: (1, 3) and (2, 1) only
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_len,output_len\n0.5,1,3\n1.0,2,1\n")
    wt = build(Workload, {"arrival": {"kind": "trace", "path": str(trace)}})
    assert kv_token_batches(wt, 1) == pytest.approx((10 + 5) / 2, abs=1e-12)


def test_token_batches_of_the_default_workload_match_its_moments() -> None:
    w = Workload()
    dv, dp = w.output_dist.pmf(w.max_output_len)
    mp, md, d2 = w.mean_prompt(), w.mean_output(), float((dv.astype(float) ** 2) @ dp)
    assert kv_token_batches(w, 1) == pytest.approx((md + 1) * mp + (d2 + md) / 2, rel=1e-12)
    assert kv_token_batches(w, 1, "computed") == pytest.approx(md * mp + (d2 - md) / 2, rel=1e-12)
    # blocks of 16 add about half a block per batch: (m_d + 1) * 7.5 tokens, give or take
    extra = kv_token_batches(w, 16) - kv_token_batches(w, 1)
    assert 0.9 * 113 * 7.5 < extra < 1.1 * 113 * 7.5


def test_memory_bound_of_the_flat_engine_by_hand() -> None:
    sc = flat_scenario(7200, 10.0)
    b = memory_bound(sc.engine, sc.workload)
    assert b.kv_token_batches == 2880
    assert b.batch_ms == pytest.approx(50.0, abs=1e-12)
    assert b.kv_token_seconds == pytest.approx(144.0, rel=1e-12)
    assert b.lambda_mem == pytest.approx(50.0, rel=1e-12)
    assert b.lambda_mem_capacity_batch == pytest.approx(50.0, rel=1e-12)
    assert b.lambda_star == pytest.approx(512 / 0.05 / 96, rel=1e-12)
    assert b.mem_batch == pytest.approx(7200 * 96 / 2880, rel=1e-12)  # 240 tokens
    assert (b.binds, b.lambda_max, b.kv_load) == ("memory", b.lambda_mem, pytest.approx(0.2))


def test_memory_bound_of_the_default_gpu() -> None:
    """CodeLlama-34B on an 80 GiB A100: 3,124 blocks of 16 = 49,984 tokens; memory binds at
    12.75 requests/s, before the token bound 13.87 (docs/capacity.md)."""
    engine = engine_with({"gpu": {}})
    assert engine.kv_cache is not None and engine.kv_cache.capacity == 49_984
    b = memory_bound(engine, Workload())
    h = kv_token_batches(Workload(), 16)
    assert b.kv_token_batches == pytest.approx(h, rel=1e-12)
    assert b.kv_token_batches == pytest.approx(25_587.4, abs=0.1)
    # a full cache holds batches of 49,984 * 241 / h = 470.8 tokens: step 4, like 512
    assert b.mem_batch == pytest.approx(49_984 * 241 / h, rel=1e-12)
    assert b.batch_ms == pytest.approx(153.16, abs=1e-9)
    assert b.lambda_mem == pytest.approx(49_984 / (0.15316 * h), rel=1e-12)
    assert b.lambda_mem == pytest.approx(12.754, abs=1e-3)
    assert b.lambda_mem_capacity_batch == pytest.approx(b.lambda_mem, rel=1e-12)
    assert b.lambda_star == pytest.approx(512 / 0.15316 / 241, rel=1e-12)
    assert b.binds == "memory" and b.lambda_max == b.lambda_mem


def test_a_small_cache_runs_shorter_batches_and_a_large_one_leaves_tokens_binding() -> None:
    h = kv_token_batches(Workload(), 16)
    small = memory_bound(engine_with({"tokens": 16384}), Workload())
    # a full cache holds batches of 154 tokens, which take t(154) = 11.28 + 2 * 35.47 ms
    assert small.mem_batch == pytest.approx(16384 * 241 / h, rel=1e-12)
    assert small.batch_ms == pytest.approx(82.22, abs=1e-9)
    assert small.lambda_mem == pytest.approx(16384 / (0.08222 * h), rel=1e-12)  # 7.79
    assert small.lambda_mem_capacity_batch == pytest.approx(16384 / (0.15316 * h), rel=1e-12)
    assert small.lambda_mem_capacity_batch < small.lambda_mem < small.lambda_star
    large = memory_bound(engine_with({"tokens": 100_000}), Workload())
    assert large.binds == "tokens" and large.lambda_max == large.lambda_star
    assert large.lambda_mem == pytest.approx(100_000 / (0.15316 * h), rel=1e-12)  # 25.5


def test_memory_bound_with_a_request_slot_limit() -> None:
    """k = 64 caps the capacity at 2775.3 tokens/s (docs/capacity.md), reached mostly by
    batches of 128 tokens (63 decodes) taking 46.75 ms: short batches, so the default GPU's
    cache is far from full (memory would fill at 41.8 req/s); 10,000 tokens fill at 8.36."""
    h = kv_token_batches(Workload(), 16)
    b = memory_bound(engine_with({"gpu": {}}, max_seqs=64), Workload())
    assert b.lambda_star == pytest.approx(2775.3 / 241, abs=1e-3)
    assert b.capacity_batch_ms == pytest.approx(46.75, abs=1e-9)
    assert b.binds == "tokens"
    assert b.lambda_mem == pytest.approx(49_984 / (0.04675 * h), rel=1e-12)
    small = memory_bound(engine_with({"tokens": 10_000}, max_seqs=64), Workload())
    assert small.mem_batch == pytest.approx(10_000 * 241 / h, rel=1e-12)  # 94 tokens
    assert small.binds == "memory"
    assert small.lambda_mem == pytest.approx(10_000 / (0.04675 * h), rel=1e-12)


def test_memory_bound_needs_a_kv_cache() -> None:
    with pytest.raises(SpecError, match=r"engine\.kv_cache: the engine has no KV cache"):
        memory_bound(EngineSpec(), Workload())


# ----------------------------------------------------------------------------- simulation


def per_request(row: dict[str, Any], throughput: float) -> tuple[float, float]:
    """Measured KV-token-seconds per request (Little's law on the run): allocated, computed."""
    return row["mem_mean"] / throughput, row["kv_mean"] / throughput


def test_simulated_kv_matches_littles_law_exactly_with_constant_lengths() -> None:
    """Below both bounds (30 req/s against lambda_mem = 50): the mean KV in use is lambda
    times the KV-token-seconds of the bound. Per request (mean KV / throughput, Little's law
    on the measured run) it is exact up to the requests cut by the window's edges (0.5%);
    against the nominal rate, the Poisson count of 54,000 arrivals adds 0.4% (one sd): 2%."""
    sc = flat_scenario(7200, 30.0)
    b = memory_bound(sc.engine, sc.workload)
    res = simulate_classes(sc)
    row, thr = res.engines["engine"], res.classes["requests"]["throughput"]
    allocated, computed = per_request(row, thr)
    assert allocated == pytest.approx(144.0, rel=0.005)
    assert computed == pytest.approx(0.05 * 2544, rel=0.005)
    assert row["mem_mean"] == pytest.approx(30.0 * b.kv_token_seconds, rel=0.02)
    assert row["kv_mean"] == pytest.approx(30.0 * 0.05 * 2544, rel=0.02)
    assert row["preemptions"] == 0 and row["verdict"] == "stable"


def test_simulated_kv_of_random_lengths_is_at_least_the_bound() -> None:
    """Lognormal lengths (the default workload) on the 50 ms engine, M = 20,000, 10 req/s
    (lambda_mem = 15.6). The bound counts the fewest batches; a long prompt that does not fit
    the room left in a batch is prefilled in two and holds its blocks one batch longer, so the
    measured KV-token-seconds per request are above the bound, by 1.5% here (at most 3%)."""
    sc = flat_scenario(20_000, 10.0, lengths={})
    b = memory_bound(sc.engine, sc.workload)
    assert b.lambda_mem == pytest.approx(20_000 / (0.05 * kv_token_batches(Workload(), 16)))
    res = simulate_classes(sc)
    row, thr = res.engines["engine"], res.classes["requests"]["throughput"]
    allocated, computed = per_request(row, thr)
    assert b.kv_token_seconds < allocated < 1.03 * b.kv_token_seconds
    comp = 0.05 * kv_token_batches(sc.workload, held="computed")
    assert comp < computed < 1.03 * comp
    assert row["preemptions"] == 0 and row["verdict"] == "stable"


def test_above_lambda_mem_the_cache_overflows_and_throughput_stops_at_lambda_mem() -> None:
    """70 req/s: above lambda_mem = 50, below lambda* = 106.7. The engine preempts, its
    backlog grows, and it completes about lambda_mem requests/s (4% fewer: recomputed
    prompts and the blocks a full cache leaves free)."""
    sc = flat_scenario(7200, 70.0)
    res = simulate_classes(sc)
    row, thr = res.engines["engine"], res.classes["requests"]["throughput"]
    assert row["preemptions"] > 1000 and row["recomputed_tokens"] > 0
    assert row["verdict"] == "unstable" and row["drift"] > 1000  # tokens/s of backlog growth
    assert 0.93 * 50.0 < thr < 50.0
    assert row["mem_mean"] > 0.95 * 7200


def test_the_default_gpu_saturates_near_lambda_mem() -> None:
    """The default engine and GPU cache, overloaded (16 req/s > lambda* = 13.87): memory
    binds, and the engine completes 13.1 requests/s, 3% above lambda_mem = 12.75 (the
    batches of a full cache straddle two steps of the staircase: some take less than
    t(n_mem) = 153.16 ms)."""
    sc = build(
        Scenario,
        {
            "engine": {"kv_cache": {"gpu": {}}},
            "workload": {"arrival": {"kind": "poisson", "rate": 16.0}},
            "run": {"horizon_s": 2000, "seed": 1},
        },
    )
    b = memory_bound(sc.engine, sc.workload)
    res = simulate_classes(sc)
    row, thr = res.engines["engine"], res.classes["requests"]["throughput"]
    assert row["preemptions"] > 0 and row["verdict"] == "unstable"
    assert b.lambda_mem < thr < 1.05 * b.lambda_mem
    assert thr < b.lambda_star


# ----------------------------------------------------------------------------- the LP


def with_kv(net: NetworkSpec, caches: dict[str, dict[str, Any]]) -> NetworkSpec:
    """``net`` with KV caches on some of its engines."""
    data = net.model_dump(mode="json", exclude_none=True)
    for name, cache in caches.items():
        data["engines"][name]["kv_cache"] = cache
    return build(NetworkSpec, data)


@pytest.mark.parametrize("name", ["fork-join", "rybko-stolyar", "replicated-2", "criss-cross"])
def test_networks_without_a_kv_cache_get_no_memory_rows(name: str) -> None:
    net = get_network(name)
    plan = static_plan(net)
    tr = traffic(net)
    bare = StaticPlanningLP(tr.eligible, tr.offered, tr.mu, tr.classes, tr.engines, tr.work)
    ref = bare.solve()
    assert plan.theta == ref.theta and plan.duals == ref.duals
    assert plan.assignment == ref.assignment
    assert plan.kv_capacity == {} and plan.kv_bottlenecks == ()
    assert "KV" not in plan.table()
    assert not network_memory(net, tr).limited


def test_a_large_cache_changes_nothing_and_has_no_price() -> None:
    net = get_network("fork-join")
    plan = static_plan(with_kv(net, {"orchestrator": {"tokens": 1_000_000}}))
    ref = static_plan(net)
    assert plan.theta == pytest.approx(ref.theta, rel=1e-9)
    assert plan.kv_duals == {"orchestrator": 0.0} and plan.kv_bottlenecks == ()
    assert plan.bottlenecks == ref.bottlenecks


def test_a_one_engine_network_reproduces_lambda_mem() -> None:
    """The scenario as its one-engine network: the LP's theta* x rate is the single-engine
    min(lambda_mem, lambda*), and the memory constraint's dual is d theta* / d M."""
    for tokens in (7200, 400_000):
        sc = flat_scenario(tokens, 30.0)
        b = memory_bound(sc.engine, sc.workload)
        lp = StaticPlanningLP.from_network(scenario_network(sc))
        plan = lp.solve()
        assert 30.0 * plan.theta == pytest.approx(b.lambda_max, rel=1e-9)
        assert plan.kv_in_use["engine"] == pytest.approx(30.0 * b.kv_token_seconds, rel=1e-9)
    # 7200 tokens: theta* = 7200 / (30 * 144) = 5/3; then d theta*/d M = theta* / M
    lp = StaticPlanningLP.from_network(scenario_network(flat_scenario(7200, 30.0)))
    plan = lp.solve()
    assert plan.theta == pytest.approx(5 / 3, rel=1e-9)
    assert plan.kv_bottlenecks == ("engine",) and plan.bottlenecks == ()
    assert plan.kv_duals["engine"] == pytest.approx(5 / 3 / 7200, rel=1e-9)
    assert plan.kv_shares["engine"] == pytest.approx(1.0, rel=1e-9)
    lp.kv_capacity.value = np.array([7300.0])
    assert lp.solve().theta - plan.theta == pytest.approx(100 * plan.kv_duals["engine"], rel=1e-9)


def test_a_tight_cache_binds_in_a_network_with_eligible_sets() -> None:
    """replicated-2 (jsq over e1, e2) with 30,000 tokens of cache at e1: the LP moves work
    to e2, theta* drops below the token bound's 1/0.9, e1's memory is full and priced, e2's
    capacity too; the duals add up to theta* (LP duality)."""
    net = get_network("replicated-2")
    ref = static_plan(net)
    plan = static_plan(with_kv(net, {"e1": {"tokens": 30_000}}))
    assert ref.theta == pytest.approx(1 / 0.9, rel=1e-9)
    assert plan.theta < ref.theta
    assert plan.kv_bottlenecks == ("e1",) and plan.bottlenecks == ("e2",)
    assert plan.kv_duals["e1"] > 0 and plan.duals["e2"] > 0
    assert plan.kv_in_use["e1"] * plan.theta == pytest.approx(30_000, rel=1e-9)
    assert plan.utilization["e2"] * plan.theta == pytest.approx(1.0, rel=1e-9)
    total = sum(plan.duals[e] * plan.mu[j] for j, e in enumerate(plan.engines))
    total += sum(plan.kv_duals[e] * plan.kv_capacity[e] for e in plan.kv_capacity)
    assert total == pytest.approx(plan.theta, rel=1e-9)
    assert "memory binds" in plan.table()


@pytest.mark.parametrize(
    ("cache", "n_mem_above_512", "seconds"),
    [
        ({"gpu": {}}, True, 0.15316),
        ({"tokens": 30_000}, False, 0.11769),
    ],
)
def test_network_kv_seconds_by_hand(
    cache: dict[str, Any], n_mem_above_512: bool, seconds: float
) -> None:
    """pipeline-3: three classes at one engine, all at the same rate, so the engine's KV per
    token of work is sum_k h_k / sum_k w_k and a full cache holds batches of
    n_mem = M sum_k w_k / sum_k h_k tokens: 588.5 with the default GPU (above n* = 512: the
    capacity batch, 153.16 ms), 353.2 with 30,000 tokens (t(353) = 11.28 + 3 * 35.47 ms).
    Each class holds E[H_k] = s E[h_k] per visit."""
    net = with_kv(get_network("pipeline-3"), {"shared": cache})
    tr = traffic(net)
    mem = network_memory(net, tr)
    h = [kv_token_batches(net.classes[c].workload(), 16) for c in net.topology.classes]
    assert mem.limited
    n_mem = mem.kv_capacity[0] * tr.work.sum() / sum(h)
    assert (n_mem > 512) == n_mem_above_512
    assert mem.batch_seconds[0] == pytest.approx(seconds, abs=1e-12)
    assert mem.kv_seconds[:, 0] == pytest.approx(seconds * np.array(h), rel=1e-12)


# ----------------------------------------------------------------------------- command line


def run_capacity(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, yaml_text: str, *args: str
) -> tuple[int, str, str]:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml_text)
    code = main(["capacity", str(cfg), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_capacity_text_shows_the_memory_row_and_which_binds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_capacity(capsys, tmp_path, "engine:\n  kv_cache: {gpu: {}}\n")
    assert code == 0
    lines = {line.split(":")[0]: line for line in out.splitlines() if ":" in line}
    assert lines["memory"] == (
        "memory:   M = 49984 tokens, 3919.0 KV-token-s per request (25587.4 token-batches x "
        "153.16 ms), lambda_mem = 12.754 req/s"
    )
    assert lines["binds"].startswith(
        "binds:    memory at 12.754 req/s, before the tokens at lambda* = 13.871 req/s (a full "
        "cache holds batches of 471 tokens); the config's rate is 0.784 x lambda_mem"
    )
    assert "lambda*:  13.871 req/s" in out and "budget sweep" in out  # the report is intact


def test_capacity_text_when_tokens_bind_and_with_a_small_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, out, _ = run_capacity(capsys, tmp_path, "engine:\n  kv_cache: {tokens: 100000}\n")
    assert (
        "binds:    tokens at lambda* = 13.871 req/s, before the memory at 25.517 req/s; "
        "the config's rate is 0.392 x lambda_mem"
    ) in out
    assert "at t(n*)" not in out
    _, out, _ = run_capacity(capsys, tmp_path, "engine:\n  kv_cache: {tokens: 16384}\n")
    assert "(25587.4 token-batches x 82.22 ms), lambda_mem = 7.788 req/s" in out
    assert "at t(n*): lambda_mem = 4.181 req/s if every batch took" in out
    assert "1.284 x lambda_mem: the cache overflows" in out


def test_capacity_json_has_the_memory_bound(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_capacity(capsys, tmp_path, "engine:\n  kv_cache: {gpu: {}}\n", "--json")
    assert code == 0
    doc = json.loads(out)
    mem = doc["memory"]
    assert set(mem) == {
        "kv_capacity",
        "block_size",
        "kv_token_batches",
        "mem_batch",
        "batch_ms",
        "kv_token_seconds",
        "lambda_mem",
        "capacity_batch_ms",
        "lambda_mem_capacity_batch",
        "fastest_batch_ms",
        "lambda_mem_upper",
        "lambda_star",
        "binds",
        "lambda_max",
        "rate",
        "kv_load",
    }
    assert (mem["kv_capacity"], mem["block_size"], mem["binds"]) == (49_984, 16, "memory")
    assert mem["lambda_mem"] == pytest.approx(12.754, abs=1e-3)
    assert mem["lambda_star"] == doc["capacity"]["lambda_star"]
    assert doc["engine"]["kv_cache"]["gpu"]["memory_gib"] == 80.0
    # without a KV cache: no memory entry, no memory row
    assert main(["capacity", "--json"]) == 0
    assert "memory" not in json.loads(capsys.readouterr().out)
    assert main(["capacity"]) == 0
    assert "memory:" not in capsys.readouterr().out


def test_capacity_of_request_classes_with_a_cache_uses_the_lp(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (
        "engine:\n  kv_cache: {tokens: 30000}\n"
        "classes:\n  chat:\n    arrival: {kind: poisson, rate: 8}\n"
        "  docs:\n    arrival: {kind: poisson, rate: 2}\n"
        "    prompt: {kind: lognormal, mean: 400, sigma: 0.5}\n"
        "    output: {kind: lognormal, mean: 200, sigma: 0.5}\n"
    )
    code, out, _ = run_capacity(capsys, tmp_path, text, "--json")
    assert code == 0
    doc = json.loads(out)
    mem = doc["memory"]["engine"]
    assert set(mem) == {"kv_capacity", "kv_in_use", "dual", "share", "binds"}
    assert mem["binds"] is True and mem["dual"] > 0 and doc["bottlenecks"] == []
    assert mem["kv_in_use"] * doc["theta"] == pytest.approx(30_000, rel=1e-9)
    code, out, _ = run_capacity(capsys, tmp_path, text)
    assert "engine                 30000        34523" in out
    assert out.rstrip().endswith("saturates or fills its KV cache; bottleneck: engine (KV cache)")


def test_network_capacity_json_is_unchanged_without_a_cache(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["capacity", "fork-join", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "memory" not in doc
    assert set(doc) == {
        "network",
        "classes",
        "engines",
        "theta",
        "utilization",
        "duals",
        "bottlenecks",
    }


BAD_CACHES = {
    "too_small": ("engine:\n  kv_cache: {tokens: 1000}\n", ["engine.kv_cache", "1536", "992"]),
    "no_size": (
        "engine:\n  kv_cache: {block_size: 16}\n",
        ["engine.kv_cache:", "tokens, or a gpu"],
    ),
    "both_sizes": (
        "engine:\n  kv_cache: {tokens: 50000, gpu: {}}\n",
        ["engine.kv_cache:", "not both"],
    ),
    "gpu_too_small": (
        "engine:\n  kv_cache: {gpu: {memory_gib: 40}}\n",
        ["engine.kv_cache.gpu:", "67.48 GB"],
    ),
    "block_larger_than_cache": (
        "engine:\n  kv_cache: {tokens: 10, block_size: 16}\n",
        ["engine.kv_cache.block_size:", "more than the whole cache"],
    ),
    "not_a_whole_number": ("engine:\n  kv_cache: {tokens: 5e4}\n", ["engine.kv_cache.tokens"]),
    "network_engine": (
        "engines:\n  e1: {kv_cache: {gpu: {memory_gib: 40}}}\n"
        "classes:\n  a: {engine: e1}\n"
        "workflows:\n"
        "  - {name: w, arrival: {kind: poisson, rate: 1}, entry: a, after: {a: exit}}\n",
        ["engines.e1.kv_cache.gpu:", "67.48 GB"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CACHES))
def test_a_bad_kv_cache_is_one_line_exit_2(
    case: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text, words = BAD_CACHES[case]
    code, out, err = run_capacity(capsys, tmp_path, text)
    assert_one_line_error(subprocess.CompletedProcess([], code, out, err), *words)


@pytest.mark.parametrize("admission", ["fcfs", "mc-sf"])
def test_no_run_is_stable_above_the_true_memory_bound(admission: str) -> None:
    """``lambda_mem_upper = M / (t_min E[h])`` bounds what any scheduler carries with the cache.
    With the GPU's cache and outputs of 600 tokens on average a full cache holds batches of
    about 99 tokens, within the staircase's first step, so the bound is tight (equal to
    ``lambda_mem``, 2.91 requests/s). At 10% above it neither the default admission nor MC-SF
    (which never preempts with exact lengths) keeps up; at 60% of it both do."""

    def run(rate: float) -> tuple[str, float, float]:
        sc = build(
            Scenario,
            {
                "engine": {
                    "kv_cache": {"gpu": {}, "admission": admission, "output_lengths": "exact"}
                },
                "workload": {
                    "arrival": {"kind": "poisson", "rate": rate},
                    "output": {"kind": "lognormal", "mean": 600, "sigma": 0.7},
                    "max_output_len": 4096,
                },
                "run": {"horizon_s": 1800, "seed": 4},
            },
        )
        res = simulate_classes(sc)
        return (
            res.verdict,
            res.classes["requests"]["throughput"],
            memory_bound(sc.engine, sc.workload).lambda_mem_upper,
        )

    verdict, thr, upper = run(1.75)
    assert upper == pytest.approx(2.912, abs=1e-3)
    assert verdict != "unstable" and thr == pytest.approx(1.75, rel=0.06)
    verdict, thr, _ = run(1.1 * upper)
    assert verdict == "unstable" and thr < 1.1 * upper * 0.97
