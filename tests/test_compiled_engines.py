"""The compiled loop on networks of LLM engines, against the Python event loop.

The compiled loop forms the batches of LLM engines without a KV-cache limit under the four
built-in schedulers (:mod:`policyopt.sim.engine_kernel`); it must give the Python loop's run
bit for bit: every metric, window and series, the counters and the state at the end (waiting
prompts, decoders and what they have left, the batch in flight). Checked on the library's LLM
networks under every policy form, on one-engine scenarios under every scheduler with and
without a slot limit and with the affine batch-time model (KV reads, profiled range), on
random networks mixing LLM engines and stations (hypothesis), on overloaded engines (buffers
growing, logs filling) and with initial requests. Runs the kernel may not take fall back.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyopt.model import NetworkSpec, Scenario
from policyopt.model.config import build
from policyopt.model.network import scenario_network
from policyopt.model.networks_library import get_network
from policyopt.policies import FCFS
from policyopt.sim.compiled_loop import why_not
from policyopt.sim.network_sim import NetworkSimulator
from policyopt.sim.schedulers.sarathi import Sarathi
from tests.test_compiled_loop import assert_same, both, check, draw_policy, state

pytest.importorskip("numba")

SCHEDULERS = ("fastertransformer", "vllm", "orca", "orca:whole", "sarathi", "sarathi:whole")
AFFINE = {
    "kind": "affine",
    "c_ms": 10.0,
    "cp_ms": 0.2,
    "cd_ms": 0.3,
    "ckv_ms": 0.001,
    "max_tokens": 400,
    "max_kv": 60_000,
}


@pytest.mark.parametrize(
    "policy",
    ["fcfs", "priority:exit", "c-mu", "max-pressure", "max-weight", "weighted-pressure:1,2,3,4"],
)
def test_rybko_stolyar_matches(policy: str) -> None:
    check(get_network("rybko-stolyar"), policy, horizon=300.0, seed=4)


@pytest.mark.parametrize("policy", ["fcfs", "priority:entry", "max-pressure", "linear:1,0,2,1,0,3"])
def test_pipeline_matches(policy: str) -> None:
    check(get_network("pipeline-3"), policy, horizon=300.0, seed=2)


def one_engine(scheduler: str, engine: dict[str, Any], rate: float) -> NetworkSpec:
    """A one-engine, one-class network from a scenario (lognormal lengths)."""
    return scenario_network(
        Scenario(
            scheduler=scheduler,
            engine=engine,
            workload={"arrival": {"kind": "poisson", "rate": rate}, "max_prompt_len": 512},
        )
    )


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize(
    "engine",
    [
        {"token_budget": 512},
        {"token_budget": 512, "max_seqs": 12},
        {"token_budget": 512, "max_seqs": 40, "batch_time": AFFINE},
    ],
    ids=["staircase", "max-seqs", "affine"],
)
@pytest.mark.parametrize("rate", [6.0, 16.0], ids=["light", "heavy"])
def test_one_engine_matches(scheduler: str, engine: dict[str, Any], rate: float) -> None:
    check(one_engine(scheduler, engine, rate), "fcfs", horizon=400.0, warmup=50.0, seed=3)


CACHES = {
    "recompute": {"tokens": 6000},
    "swap-watermark": {"tokens": 6000, "preemption": "swap", "watermark": 0.05},
    "token-blocks": {"tokens": 4000, "block_size": 1},
}


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("cache", CACHES.values(), ids=CACHES.keys())
def test_kv_cache_matches(scheduler: str, cache: dict[str, Any]) -> None:
    """A cache small enough that requests are preempted (recomputed or swapped out) and the
    admission rule holds prompts back."""
    net = one_engine(scheduler, {"token_budget": 512, "max_seqs": 64, "kv_cache": cache}, 9.0)
    py, jit = both(net, "fcfs", horizon=400.0, warmup=50.0, seed=6)
    assert_same(py.run().result(), jit.run().result())
    assert state(py) == state(jit)
    if scheduler != "fastertransformer":  # (its groups are admitted whole: none preempted)
        assert jit.engines[0].mem.preemptions > 0
    for sim in (py, jit):  # the decoders' blocks, written into them
        for dq in sim.engines[0].dec.values():
            dq.materialize()  # type: ignore[attr-defined]
    for a, b in zip(py.engines[0].mem.resident, jit.engines[0].mem.resident, strict=True):
        assert (a.id, a.held, a.blocks, a.pre_left) == (b.id, b.held, b.blocks, b.pre_left)
    assert [j.id for j in py.engines[0].mem.swapped] == [j.id for j in jit.engines[0].mem.swapped]


def test_overload_growth_full_logs_and_initial_requests_match() -> None:
    """An engine far over its capacity for an hour (queues of thousands past the first
    buffers, the logs filled and folded), and a run from initial requests."""
    check(one_engine("vllm", {}, 30.0), "fcfs", horizon=3600.0, seed=1)
    check(get_network("rybko-stolyar"), "max-pressure", initial=[40, 0, 25, 3], horizon=60.0)


def random_llm_network(draw: st.DrawFn) -> tuple[NetworkSpec, str]:
    """Two or three engines (LLM engines, and perhaps a station) with random schedulers,
    budgets, slot limits and lengths; a chain of classes with random routing; a policy."""
    n_eng = draw(st.integers(1, 3))
    engines: dict[str, Any] = {}
    for i in range(n_eng):
        if i > 0 and draw(st.integers(0, 3)) == 0:
            engines[f"e{i}"] = {"kind": "station"}
            continue
        scheduler = draw(st.sampled_from(SCHEDULERS))
        chunks = scheduler in ("orca", "sarathi")  # else a budget holds the longest prompt
        eng: dict[str, Any] = {
            "kind": "llm",
            "scheduler": scheduler,
            "token_budget": draw(st.sampled_from([16, 48, 128] if chunks else [48, 128])),
        }
        if draw(st.booleans()):
            eng["max_seqs"] = draw(st.integers(1, 8))
        if draw(st.booleans()):
            eng["batch_time"] = {**AFFINE, "max_tokens": 64, "max_kv": 2000}
        if draw(st.booleans()):  # a cache small enough to preempt
            eng["kv_cache"] = {
                "tokens": draw(st.sampled_from([120, 300, 1000])),
                "block_size": draw(st.sampled_from([1, 4, 16])),
                "preemption": draw(st.sampled_from(["recompute", "swap"])),
                "watermark": draw(st.sampled_from([0.0, 0.1])),
            }
        engines[f"e{i}"] = eng
    lengths = [
        {"kind": "constant", "value": 12},
        {"kind": "uniform", "low": 1, "high": 40},
        {"kind": "geometric", "mean": 6.0},
    ]
    n_cls = draw(st.integers(1, 4))
    classes: dict[str, Any] = {}
    for c in [f"c{i}" for i in range(n_cls)] + ["d"]:
        e = f"e{draw(st.integers(0, n_eng - 1))}"
        if engines[e]["kind"] == "station":
            classes[c] = {"engine": e, "service": {"kind": "exponential", "mean": 0.05}}
        else:
            classes[c] = {
                "engine": e,
                "prompt": draw(st.sampled_from(lengths)),
                "output": draw(st.sampled_from(lengths)),
                "max_prompt_len": 40,
                "max_output_len": 40,
            }
    after: dict[str, Any] = {}
    for c in range(n_cls):
        on = f"c{c + 1}" if c + 1 < n_cls else "exit"
        back = f"c{draw(st.integers(0, c))}"
        if draw(st.booleans()):
            after[f"c{c}"] = on
        elif on == "exit":
            after[f"c{c}"] = {"random": {back: 0.3, "exit": 0.7}}
        else:
            after[f"c{c}"] = {"random": {on: 0.6, back: 0.2, "exit": 0.2}}
    rate = draw(st.sampled_from([0.5, 2.0, 6.0]))
    workflows = [
        {"name": "w", "arrival": {"kind": "poisson", "rate": rate}, "entry": "c0", "after": after},
        {
            "name": "v",
            "arrival": {"kind": "poisson", "rate": rate},
            "entry": "d",
            "after": {"d": "exit"},
        },
    ]
    spec = {"name": "random-llm", "engines": engines, "classes": classes, "workflows": workflows}
    policies = ("fcfs", "c-mu", "lbfs", "max-pressure", "max-weight", "linear")
    return build(NetworkSpec, spec), draw_policy(draw, policies, n_cls + 1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_llm_networks_match(data: st.DataObject) -> None:
    net, policy = data.draw(st.composite(random_llm_network)())
    seed = data.draw(st.integers(0, 1000))
    check(net, policy, horizon=200.0, seed=seed)


def test_progress_is_shown_in_the_compiled_loop() -> None:
    times: list[float] = []
    py, jit = both(one_engine("sarathi", {}, 12.0), "fcfs", horizon=10_800.0, seed=5)
    assert_same(py.run().result(), jit.run(progress=times.append).result())
    assert len(times) >= 2 and times == sorted(times) and times[-1] < 10_800.0


def test_result_without_the_jobs_is_the_same() -> None:
    """``run(keep_jobs=False)`` skips writing the jobs back, not any number."""
    net = one_engine("fastertransformer", {}, 16.0)
    kept = NetworkSimulator(net, "fcfs", horizon=600.0, seed=8).run().result()
    sim = NetworkSimulator(net, "fcfs", horizon=600.0, seed=8)
    assert sim.compiled
    assert_same(kept, sim.run(keep_jobs=False).result())
    assert not any(sim.engines[0].wait.values())  # the queues were not written back


class SplitFCFS(FCFS):
    """First come first served, with the scheduler's own budget split asked at every batch."""

    name = "split-fcfs"
    splits = True


def test_llm_runs_the_kernel_may_not_take() -> None:
    rule = {"tokens": 50_000, "admission": "mc-sf", "output_lengths": "exact"}
    cache = Scenario(engine={"kv_cache": rule})
    sim = NetworkSimulator(scenario_network(cache), "fcfs", horizon=10.0)
    assert not sim.compiled
    assert why_not(sim) == "engine 'engine' admits by rule 'mc-sf', computed in Python"
    split = NetworkSimulator(scenario_network(Scenario()), SplitFCFS(), horizon=10.0)
    assert why_not(split) == "policy 'split-fcfs' splits the token budget"
    recorded = NetworkSimulator(
        scenario_network(Scenario()), "fcfs", horizon=10.0, record_batches=True
    )
    assert why_not(recorded) == "batch records are kept in the Python loop"
    idling = NetworkSimulator(get_network("rybko-stolyar"), "max-pressure:dai-lin", horizon=1.0)
    reason = "policy 'max-pressure:dai-lin' re-decides or idles at LLM engines"
    assert not idling.compiled and why_not(idling) == reason
    fluid = NetworkSimulator(get_network("rybko-stolyar"), "fluid", horizon=1.0)
    assert why_not(fluid) == "policy 'fluid' is computed in Python"


def test_a_scheduler_of_ones_own_runs_in_python() -> None:
    """A subclass of a built-in scheduler may change a rule: the Python loop runs it."""

    class Greedy(Sarathi):
        pass

    sim = NetworkSimulator(scenario_network(Scenario()), "fcfs", horizon=10.0)
    sim.engines[0].sched = Greedy(sim.engines[0].sched.spec)
    assert why_not(sim) == "engine 'engine' has a scheduler of its own (Greedy)"


def test_preemption_counts_widen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests preempted more often than the kernel's first count columns allow."""
    import policyopt.sim.compiled_loop as compiled_loop

    monkeypatch.setattr(compiled_loop, "PREEMPT_COLUMNS", 2)
    net = one_engine("sarathi", {"token_budget": 512, "kv_cache": {"tokens": 3000}}, 12.0)
    py, jit = both(net, "fcfs", horizon=300.0, seed=2)
    assert_same(py.run().result(), jit.run().result())
    assert state(py) == state(jit)
    assert max(jit.engines[0].preempt_counts) >= 2  # past the first columns
    assert jit.engines[0].preempt_counts == py.engines[0].preempt_counts
