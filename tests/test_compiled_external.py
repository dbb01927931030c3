"""External mode in the compiled loop against the Python loop, the reference.

The same decisions, taken step by step in both loops, must meet the same states at every
decision (what the simulator's queries return) and leave the same run behind (result and
state, as in ``test_compiled_loop``); the environment on either loop gives the same
observations, rewards, infos and masks.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyopt.envs import AgentNetworkEnv
from policyopt.envs.agent_network import observation
from policyopt.model import NetworkSpec
from policyopt.model.config import build
from policyopt.model.networks_library import get_network
from policyopt.policies import MaxPressure
from policyopt.sim.network_sim import NetworkSimulator
from tests.test_compiled_engines import random_llm_network
from tests.test_compiled_loop import assert_same, fork_network, random_network, state

pytest.importorskip("numba")

NETWORKS = (
    "rybko-stolyar",
    "fork-join",
    "criss-cross",
    "lu-kumar",
    "pipeline-3",
    "extended-six-class-2",
)


def snapshot(sim: NetworkSimulator, j: int, weights: list[float]) -> tuple[Any, ...]:
    """What the queries of a simulator return at a decision of engine ``j``."""
    return (
        j,
        sim.now,
        sim.classes_with_work(j),
        sim.class_state_flat(),
        sim.cost_so_far(weights),
        sim.fcfs_order(j),
        sim.view.engine_jobs(j),
        sim.job_seconds().tolist(),
        sim.jobs.tolist(),
        sim.memory_free(),
    )


def drive(
    net: NetworkSpec, loop: str, choose: str, skip: bool, seed: int, horizon: float, **kw: Any
) -> tuple[list[tuple[Any, ...]], NetworkSimulator]:
    """Run ``net`` in external mode with decisions drawn from ``seed``: ``choose`` is
    ``order`` (a random full order), ``first`` (a random class first, the others by
    maximum pressure), ``pressure`` (maximum pressure's order) or ``capped`` (a random first
    class, a random decode cap and token cap, and one-class LLM engines asked too)."""
    sim = NetworkSimulator(net, None, horizon=horizon, warmup=0.0, seed=seed, loop=loop, **kw)
    assert sim.compiled == (loop == "compiled")
    sim.ask_single = choose == "capped"
    mp = MaxPressure()
    mp.bind(net)
    rng = np.random.default_rng(seed)
    weights = [1.0 + k for k in range(net.topology.n_classes)]
    trace = []
    while (j := sim.advance(skip)) is not None:
        trace.append(snapshot(sim, j, weights))
        classes = list(sim.view.classes_at[j])
        if choose == "order":
            sim.decide([classes[i] for i in rng.permutation(len(classes))])
        elif choose == "first":
            sim.decide_first(classes[int(rng.integers(len(classes)))])
        elif choose == "capped":
            caps = [None if rng.random() < 0.3 else int(rng.integers(lo, 200)) for lo in (0, 1)]
            sim.decide_first(classes[int(rng.integers(len(classes)))], *caps)
        else:
            sim.decide(mp.order(j, sim.view))
    return trace, sim


def check(net: NetworkSpec, choose: str, skip: bool, seed: int, horizon: float) -> int:
    """Both loops, the same decisions: the same states at every step and the same run."""
    py_trace, py = drive(net, "python", choose, skip, seed, horizon)
    jit_trace, jit = drive(net, "compiled", choose, skip, seed, horizon)
    assert len(py_trace) == len(jit_trace)
    for a, b in zip(py_trace, jit_trace, strict=True):
        assert a == b
    assert_same(py.result(), jit.result())
    assert state(py) == state(jit)
    return len(py_trace)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("choose", ["order", "first", "pressure", "capped"])
def test_library_networks_step_alike(network: str, choose: str) -> None:
    for skip in (True, False):
        assert check(get_network(network), choose, skip, seed=3, horizon=400.0) > 50


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_networks_step_alike(data: st.DataObject) -> None:
    maker = data.draw(st.sampled_from([random_network, fork_network, random_llm_network]))
    net = data.draw(st.composite(maker)())
    if isinstance(net, tuple):
        net = net[0]
    choose = data.draw(st.sampled_from(["order", "first", "capped"]))
    check(net, choose, data.draw(st.booleans()), data.draw(st.integers(0, 1000)), 300.0)


def test_growth_steps_alike() -> None:
    """An overloaded network: the kernel's buffers grow (and are packed anew) mid-run."""
    net = get_network("criss-cross")
    over = net.scaled(2.0)
    check(over, "first", True, seed=1, horizon=3000.0)


def test_initial_jobs_step_alike() -> None:
    net = get_network("criss-cross")
    runs = []
    for loop in ("python", "compiled"):
        sim = NetworkSimulator(net, None, horizon=300.0, seed=2, loop=loop)
        sim.add_jobs([30, 5, 12])
        while (j := sim.advance(True)) is not None:
            sim.decide_first(sim.view.classes_at[j][-1])
        runs.append(sim)
    assert_same(runs[0].result(), runs[1].result())
    assert state(runs[0]) == state(runs[1])


def test_watched_observation_is_the_python_one() -> None:
    """The kernel's observation and costs at a decision, against the Python functions."""
    env = AgentNetworkEnv("lu-kumar", horizon=200.0, loop="python")
    sim = NetworkSimulator(env.net, None, horizon=200.0, seed=4, loop="compiled")
    weights = [0.5 * (k + 1) for k in range(env.n_classes)]
    sim.watch(env._scale, weights)
    assert sim.watched is None  # (the kernel starts at the first advance)
    n = 0
    while (j := sim.advance(True)) is not None:
        watched = sim.watched
        assert watched is not None
        obs, out = watched
        assert np.array_equal(obs, observation(sim.view, j, env._scale))
        jobs = sim.jobs.tolist()
        rate = sum(h * x for h, x in zip(weights, jobs, strict=True))
        legal = sum(1 << k for k in sim.classes_with_work(j))
        assert out.tolist() == [*sim.cost_so_far(weights), sum(jobs), rate, legal, sim.now, j]
        sim.decide_first(sim.classes_with_work(j)[0])
        n += 1
    assert n > 50 and sim.watched is None


@pytest.mark.parametrize(
    ("network", "action"),
    [
        ("rybko-stolyar", "order"),
        ("fork-join", "order"),
        ("criss-cross", "order"),
        ("lu-kumar", "order"),
        ("rybko-stolyar", "split"),
        ("fork-join", "cap"),
        ("rybko-stolyar", "cap"),
    ],
)
def test_env_on_both_loops_alike(network: str, action: str) -> None:
    for skip in (True, False):
        envs = [
            AgentNetworkEnv(network, horizon=200.0, loop=loop, skip_trivial=skip, action=action)
            for loop in ("python", "compiled")
        ]
        assert [e.loop for e in envs] == ["python", "compiled"]
        first = [e.reset(seed=5, options={"random_init": True}) for e in envs]
        assert np.array_equal(first[0][0], first[1][0]) and first[0][1] == first[1][1]
        rng = np.random.default_rng(0)
        truncated, steps = False, 0
        while not truncated:
            a = int(rng.integers(envs[0].action_space.n))  # (illegal ones too)
            out = [e.step(a) for e in envs]
            assert np.array_equal(out[0][0], out[1][0])
            assert out[0][1:] == out[1][1:]
            assert np.array_equal(envs[0].action_masks(), envs[1].action_masks())
            truncated, steps = out[0][3], steps + 1
        assert steps > 50
        assert_same(envs[0].result(), envs[1].result())


def test_env_takes_the_compiled_loop_where_it_may() -> None:
    assert AgentNetworkEnv("criss-cross").loop == "compiled"
    assert AgentNetworkEnv("fork-join").loop == "compiled"
    assert AgentNetworkEnv("replicated-3").loop == "python"  # a class at several engines
    assert AgentNetworkEnv("rybko-stolyar", action="split").loop == "compiled"
    assert AgentNetworkEnv("criss-cross", loop="python").loop == "python"
    with pytest.raises(ValueError, match="loop: compiled is not possible here: class 'chat'"):
        AgentNetworkEnv("replicated-3", loop="compiled")
    with pytest.raises(ValueError, match="loop must be one of auto, python, compiled"):
        AgentNetworkEnv("criss-cross", loop="fast")


def test_external_mode_takes_the_compiled_loop_when_asked() -> None:
    net = get_network("criss-cross")
    assert not NetworkSimulator(net, None, horizon=10.0).compiled  # auto: the Python loop
    assert NetworkSimulator(net, None, horizon=10.0, loop="compiled").compiled


def test_compiled_external_refusals_name_the_field() -> None:
    sim = NetworkSimulator(get_network("lu-kumar"), None, horizon=100.0, loop="compiled")
    j = sim.advance()
    assert j is not None
    classes = sim.view.classes_at[j]
    with pytest.raises(ValueError, match="order lists every class of the engine once"):
        sim.decide(list(classes[:1]))
    with pytest.raises(ValueError, match="token_cap must be >= 1 token"):
        sim.decide_first(classes[0], token_cap=0)
    with pytest.raises(ValueError, match="serves only"):
        sim.decide_first(99)
    with pytest.raises(RuntimeError, match="watch\\(\\) comes before the first advance"):
        sim.watch([1.0], [1.0])
    with pytest.raises(RuntimeError, match="add jobs before the first advance"):
        sim.add_jobs([1, 0, 0, 0])
    sim.decide(list(classes))
    with pytest.raises(RuntimeError, match="no decision is pending"):
        sim.decide_first(classes[0])


def test_a_deep_copy_runs_on_its_own() -> None:
    """A copy of an environment mid-episode (its simulator in the compiled loop) continues
    as the original does, on its own arrays."""
    env = AgentNetworkEnv("fork-join", horizon=100.0, loop="compiled")
    env.reset(seed=0)
    for _ in range(50):
        env.step(1)
    twin = copy.deepcopy(env)
    assert twin.sim is not None and env.sim is not None
    assert twin.sim.jobs is not env.sim.jobs
    rng = np.random.default_rng(0)
    truncated = False
    while not truncated:
        a = int(rng.integers(env.action_space.n))
        out, copied = env.step(a), twin.step(a)
        assert np.array_equal(out[0], copied[0]) and out[1:] == copied[1:]
        truncated = out[3]
    assert_same(env.result(), twin.result())


def test_env_with_a_kv_cache_on_both_loops_alike() -> None:
    """An engine whose KV cache preempts: the observation's free share and the episodes."""
    lengths = {"kind": "lognormal", "sigma": 0.6}
    spec = {
        "name": "cached",
        "engines": {"llm": {"kind": "llm", "kv_cache": {"tokens": 3000, "block_size": 16}}},
        "classes": {
            "chat": {"engine": "llm", "prompt": {**lengths, "mean": 128},
                     "output": {**lengths, "mean": 64}, "max_prompt_len": 1024},
            "long": {"engine": "llm", "prompt": {**lengths, "mean": 512},
                     "output": {**lengths, "mean": 256}, "max_prompt_len": 1024},
        },
        "workflows": [
            {"name": n, "arrival": {"kind": "poisson", "rate": r}, "entry": n, "after": {n: "exit"}}
            for n, r in (("chat", 6.0), ("long", 2.0))
        ],
    }  # fmt: skip
    net = build(NetworkSpec, spec)
    envs = [AgentNetworkEnv(net, horizon=120.0, loop=loop) for loop in ("python", "compiled")]
    assert envs[1].loop == "compiled" and envs[0].observation_space.shape == (8,)
    outs = [e.reset(seed=1) for e in envs]
    assert np.array_equal(outs[0][0], outs[1][0])
    rng = np.random.default_rng(2)
    truncated, free = False, set()
    while not truncated:
        a = int(rng.integers(2))
        out = [e.step(a) for e in envs]
        assert np.array_equal(out[0][0], out[1][0]) and out[0][1:] == out[1][1:]
        free.add(float(out[1][0][-1]))
        truncated = out[0][3]
    assert len(free) > 10  # the cache's free share moved
    assert envs[1].sim is not None and envs[1].sim.engines[0].mem.preemptions > 0
    assert_same(envs[0].result(), envs[1].result())


def swap_network(station: bool) -> NetworkSpec:
    """An Orca engine with a small KV cache that swaps requests out (at times the engine
    holds nothing but swapped-out requests), beside a second engine or a station."""

    def law(kind: str, **kw: Any) -> dict[str, Any]:
        return {"kind": kind, **kw}

    llm = {"max_prompt_len": 40, "max_output_len": 40}
    cache = {"tokens": 120, "block_size": 4, "preemption": "swap", "watermark": 0.0}
    engines: dict[str, Any] = {
        "e0": {"kind": "llm", "token_budget": 128, "scheduler": "orca", "kv_cache": cache},
        "e1": {"kind": "station"}
        if station
        else {"kind": "llm", "token_budget": 48, "scheduler": "fastertransformer"},
    }
    classes: dict[str, Any] = {
        "c0": {"engine": "e0", "prompt": law("uniform", low=1, high=40), **llm,
               "output": law("geometric", mean=6.0)},
        "c1": {"engine": "e0", "prompt": law("geometric", mean=6.0), **llm,
               "output": law("uniform", low=1, high=40)},
        "d": {"engine": "e1", "service": law("exponential", mean=0.05)}
        if station
        else {"engine": "e1", "prompt": law("constant", value=12), **llm,
              "output": law("constant", value=12)},
    }  # fmt: skip
    after = {
        "c0": {"random": {"c1": 0.6, "c0": 0.2, "exit": 0.2}},
        "c1": {"random": {"c1": 0.3, "exit": 0.7}},
    }
    workflows = [
        {"name": "w", "arrival": law("poisson", rate=2.0), "entry": "c0", "after": after},
        {"name": "v", "arrival": law("poisson", rate=2.0), "entry": "d", "after": {"d": "exit"}},
    ]
    spec = {"name": "swaps", "engines": engines, "classes": classes, "workflows": workflows}
    return build(NetworkSpec, spec)


@pytest.mark.parametrize("station", [False, True])
@pytest.mark.parametrize(("choose", "skip"), [("first", True), ("capped", False)])
def test_swapped_out_requests_are_work(station: bool, choose: str, skip: bool) -> None:
    """An engine whose only work is swapped out still decides (it asks, or, trivially, takes
    its classes in index order), in both loops alike."""
    net = swap_network(station)
    assert check(net, choose, skip, seed=591, horizon=300.0) > 1000
