"""Cross-check: the single-engine simulator and a one-engine, one-class network simulate the
same batches and the same departure times for every registered scheduler.

Both simulators ask the same scheduler objects to form each batch, but they keep their
queues in different data structures (arrival-ordered arrays and a bucket queue of finish
times; per-class deques of jobs with lazy heaps). Hypothesis draws random request lists, budgets,
``max_seqs`` limits and batch-time models (with the affine model's KV-read term) and the two
runs must agree batch by batch; with the single engine's shortcut that advances runs of
identical decode-only batches in one step, the times agree to rounding.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyopt.model import EngineSpec, Scenario, build
from policyopt.model.network import scenario_network
from policyopt.model.scheduler import scheduler_spec
from policyopt.sim.engine_sim import EngineSimulator, RequestList
from policyopt.sim.network_sim import NetworkSimulator

SCHEDULERS = ["fastertransformer", "vllm", "orca", "orca:whole", "sarathi", "sarathi:whole"]

BATCH_TIMES: list[dict[str, Any]] = [
    {"kind": "staircase", "c_ms": 11.28, "a_ms": 35.47, "b0": 8},
    {"kind": "piecewise", "c_ms": 5.0, "a_ms": 0.5, "b0": 6},
    {"kind": "affine", "c_ms": 4.0, "cp_ms": 0.2, "cd_ms": 0.5, "ckv_ms": 0.01, "max_tokens": 20},
]


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    scheduler = draw(st.sampled_from(SCHEDULERS))
    budget = draw(st.integers(2, 40))
    chunks = scheduler_spec(scheduler).chunks
    longest = 3 * budget if chunks else budget
    n = draw(st.integers(1, 25))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.001, 0.013, 0.05, 0.4]), min_size=n, max_size=n))
    arrivals = []
    t = 0.0
    for g in gaps:
        t += g
        arrivals.append(t)
    return {
        "scheduler": scheduler,
        "budget": budget,
        "max_seqs": draw(st.one_of(st.none(), st.integers(1, 6))),
        "batch_time": draw(st.sampled_from(BATCH_TIMES)),
        "arrivals": arrivals,
        "prompts": draw(st.lists(st.integers(1, longest), min_size=n, max_size=n)),
        "outputs": draw(st.lists(st.integers(1, 12), min_size=n, max_size=n)),
    }


def run_both(case: dict[str, Any], coalesce: bool) -> tuple[EngineSimulator, NetworkSimulator]:
    engine = EngineSpec(
        token_budget=case["budget"], max_seqs=case["max_seqs"], batch_time=case["batch_time"]
    )
    longest = max(case["prompts"])
    scenario = build(
        Scenario,
        {
            "engine": engine,
            "scheduler": case["scheduler"],
            "workload": {
                "prompt": {"kind": "constant", "value": longest},
                "max_prompt_len": longest,
            },
        },
    )
    requests = RequestList(case["arrivals"], case["prompts"], case["outputs"])
    single = EngineSimulator(
        engine,
        scenario.scheduler,
        requests,
        horizon=1e6,
        record_batches=True,
        coalesce=coalesce,
    )
    single.run()
    net = NetworkSimulator(
        scenario_network(scenario),
        "fcfs",
        horizon=1e6,
        warmup=0.0,
        trace=True,
        record_batches=True,
        requests={"requests": requests},
    )
    net.run()
    return single, net


def network_batches(net: NetworkSimulator) -> list[tuple[float, float, list, list]]:
    """The network's batches with job ids replaced by arrival ranks (ids grow with arrivals)."""
    ids = sorted({i for b in net.batches for i in [*(j for j, _ in b.prefill), *b.decode]})
    rank = {j: r for r, j in enumerate(ids)}
    return [
        (b.start, b.end, [(rank[j], c) for j, c in b.prefill], [rank[j] for j in b.decode])
        for b in net.batches
    ]


def departures(net: NetworkSimulator) -> list[float]:
    """Departure time of each request, in arrival order."""
    done = {flow: t for t, what, _, flow, _ in net.trace if what == "done"}  # type: ignore[union-attr]
    return [done[f] for f in sorted(done)]


@settings(max_examples=150, deadline=None)
@given(cases())
def test_single_engine_and_one_engine_network_agree(case: dict[str, Any]) -> None:
    single, net = run_both(case, coalesce=False)
    want = [(b.start, b.end, b.prefill, b.decode) for b in single.batches]
    assert network_batches(net) == want
    assert single.completed == len(case["arrivals"])
    assert departures(net) == single.w_fin
    a, b = single.counters, net.engines[0].stats
    assert (a.batches, a.tokens, a.full) == (b.batches, b.tokens, b.full)
    assert (a.not_work_conserving, a.out_of_range) == (b.not_work_conserving, b.out_of_range)
    assert a.kv_area == pytest.approx(b.kv_area, rel=1e-12, abs=1e-12)
    assert single.kv_max == net.engines[0].kv_max
    assert single.kv == net.engines[0].kv == 0  # everything left: no KV held
    # time to first token (end of the first decode batch), mean over the requests
    ttft = [f - a for f, a in zip(single.w_ftok, case["arrivals"], strict=True)]
    assert net.class_n[1] == len(ttft)
    assert net.class_sum[1] / net.class_n[1] == pytest.approx(sum(ttft) / len(ttft), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(cases())
def test_decode_run_shortcut_agrees_to_rounding(case: dict[str, Any]) -> None:
    """Up to rounding: an arrival that ties with a batch end to within rounding may be seen
    one batch earlier or later by the one-step shortcut (``now + k * tau`` against ``k``
    additions of ``tau``). Poisson arrivals never tie; here every arrival is moved off the
    round values the strategy draws by an irrational fraction of a microsecond."""
    jitter = [a + 1e-6 * ((i * 0.6180339887498949) % 1.0) for i, a in enumerate(case["arrivals"])]
    case = {**case, "arrivals": sorted(jitter)}
    single, net = run_both(case, coalesce=True)
    got = network_batches(net)
    assert [(p, d) for _, _, p, d in got] == [(b.prefill, b.decode) for b in single.batches]
    ends = [end for _, end, _, _ in got]
    assert ends == pytest.approx([b.end for b in single.batches], rel=1e-12)
    assert departures(net) == pytest.approx(single.w_fin, rel=1e-12)
