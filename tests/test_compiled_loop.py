"""The compiled loop of station networks against the Python event loop, its reference.

Both loops must give the same run bit for bit: the same result (every metric, window and
sampled series), the same counters, and the same state at the end (queues, the jobs in
service, pending events). The library's station networks under every policy form the kernel
knows (fixed orders, FCFS, the maximum-pressure family, linear indices), random networks
(random routing, one to three servers, several service and arrival laws, both disciplines)
through hypothesis, stations with three servers, and the kernel's stops (buffers growing,
logs filling, progress, initial jobs). A run the kernel may not take falls back to Python,
or names its reason when the compiled loop is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyopt.model import NetworkSpec
from policyopt.model.config import build
from policyopt.model.networks_library import get_network, single_station
from policyopt.sim.compiled_loop import why_not
from policyopt.sim.network_sim import NetworkResult, NetworkSimulator

pytest.importorskip("numba")

POLICIES = (
    "fcfs",
    "c-mu",
    "lbfs",
    "fbfs",
    "max-pressure",
    "max-pressure:dai-lin",
    "max-weight",
)


def state(sim: NetworkSimulator) -> dict[str, Any]:
    """What a run leaves behind besides its result."""
    llm = [e for e in sim.engines if e.llm]
    return {
        "counters": (sim.decisions, sim.jobs_created, sim.next_id, sim.seq, sim.now),
        "queues": [
            [(j.id, j.cls, j.arrived, j.workflow, j.fork, j.pre_left) for j in eng.wait[k]]
            for eng in sim.engines
            for k in eng.classes
        ],
        "current": [None if e.current is None else e.current.id for e in sim.engines],
        "serving": [[(j.id, j.since, j.ver) for j in e.serving] for e in sim.engines],
        "engines": [
            (e.backlog, e.done_work, e.arrived_work, e.stats.batches, e.version, e.started)
            for e in sim.engines
        ],
        "events": sorted(
            (t, kind, seq, a, payload(sim, kind, seq, a, p)) for t, kind, seq, a, p in sim.events
        ),
        "decide": list(sim.decide_queue),
        "forks": sorted(sim.forks.items()),
        # LLM engines: the requests' tokens, the decoders (oldest first) and what is left of
        # them, those without a first token, the batch counters
        "prompts": [[(j.prompt, j.dec_tokens) for q in e.wait.values() for j in q] for e in llm],
        "decoders": [
            [
                [(j.id, dq.remaining(j)) for j in dq.alive] + [(j.id, n) for j, n in dq.outside]
                for dq in e.dec.values()
            ]
            for e in llm
        ],
        "unstarted": [[[j.id for j in q] for q in e.unstarted.values()] for e in llm],
        "batches": [
            (e.n_wait, e.n_dec, e.pre_backlog, e.kv, e.kv_max, e.busy, *e.stats.__dict__.values())
            for e in llm
        ],
    }


def payload(sim: NetworkSimulator, kind: int, seq: int, a: int, job: Any) -> Any:
    """A pending event's job: a live completion's job id (not one of a preempted service),
    or the ids of the requests an LLM batch finishes."""
    if job is None:
        return None
    eng = sim.engines[a]
    if eng.llm:
        return tuple(j.id for j in job)
    live = job.ver == seq if eng.multi else seq == eng.version
    return job.id if live else None


def assert_same(a: NetworkResult, b: NetworkResult) -> None:
    assert a.summary() == b.summary()
    assert np.array_equal(a.window_jobs, b.window_jobs)
    assert a.series.keys() == b.series.keys()
    for key in a.series:
        assert np.array_equal(a.series[key], b.series[key]), key


def both(net: NetworkSpec, policy: str, **kw: Any) -> tuple[NetworkSimulator, NetworkSimulator]:
    """The run in the Python loop and in the compiled loop."""
    py = NetworkSimulator(net, policy, loop="python", **kw)
    jit = NetworkSimulator(net, policy, loop="compiled", **kw)
    assert not py.compiled and jit.compiled
    return py, jit


def check(net: NetworkSpec, policy: str, initial: list[int] | None = None, **kw: Any) -> None:
    py, jit = both(net, policy, **kw)
    if initial is not None:
        py.add_jobs(initial)
        jit.add_jobs(initial)
    assert_same(py.run().result(), jit.run().result())
    assert state(py) == state(jit)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    "network", ["criss-cross-im", "lu-kumar", "classic-rybko-stolyar", "extended-six-class-2"]
)
def test_library_networks_match(network: str, policy: str) -> None:
    check(get_network(network), policy, horizon=3000.0, seed=3)


@pytest.mark.parametrize(
    "policy", ["priority:c4>c2>c1>c3", "weighted-pressure:1,2,0.5,3", "linear:1,0,2,0.5,0.5,1,3,0"]
)
def test_priorities_and_weights_match(policy: str) -> None:
    check(get_network("lu-kumar"), policy, horizon=3000.0, seed=1)


def random_network(
    draw: st.DrawFn,
) -> tuple[NetworkSpec, str]:
    """A station network with random routing, service and arrival laws, and a policy."""
    n_st = draw(st.integers(1, 3))
    n_cls = draw(st.integers(1, 5))
    stations = {f"s{i}": {"kind": "station"} for i in range(n_st)}
    for s in stations.values():
        if draw(st.booleans()):
            s["discipline"] = "non-preemptive"
        s["servers"] = draw(st.sampled_from([1, 1, 2, 3]))
    laws = [
        {"kind": "exponential"},
        {"kind": "deterministic"},
        {"kind": "erlang", "k": 2},
        {"kind": "hyperexponential", "scv": 4.0},
    ]
    classes: dict[str, Any] = {}
    for c in [f"c{i}" for i in range(n_cls)] + ["d"]:
        law = dict(draw(st.sampled_from(laws)))
        law["mean"] = draw(st.sampled_from([0.05, 0.1, 0.2]))
        classes[c] = {"engine": f"s{draw(st.integers(0, n_st - 1))}", "service": law}
    # a chain c0 -> c1 -> ... (each step fixed, or random: on, back, or out), then out
    after: dict[str, Any] = {}
    for c in range(n_cls):
        on = f"c{c + 1}" if c + 1 < n_cls else "exit"
        if draw(st.booleans()):
            after[f"c{c}"] = on
        else:
            back = f"c{draw(st.integers(0, c))}"
            after[f"c{c}"] = {"random": {on: 0.6, back: 0.2, "exit": 0.2}}
        if on == "exit" and isinstance(after[f"c{c}"], dict):
            after[f"c{c}"] = {"random": {back: 0.3, "exit": 0.7}}
    arrivals = [
        {"kind": "poisson", "rate": 1.0},
        {"kind": "deterministic", "rate": 1.0},
        {"kind": "renewal", "rate": 1.0, "law": {"kind": "erlang", "k": 3}},
        {"kind": "mmpp", "rates": [0.5, 2.0], "holding": [10.0, 5.0]},
    ]
    workflows = [
        {"name": "w", "arrival": draw(st.sampled_from(arrivals)), "entry": "c0", "after": after},
        {
            "name": "v",
            "arrival": draw(st.sampled_from(arrivals)),
            "entry": "d",
            "after": {"d": "exit"},
        },
    ]
    spec = {"name": "random", "engines": stations, "classes": classes, "workflows": workflows}
    return build(NetworkSpec, spec), draw_policy(draw, (*POLICIES, "linear"), n_cls + 1)


def draw_policy(draw: st.DrawFn, policies: tuple[str, ...], classes: int) -> str:
    """One of ``policies``; ``linear`` gets an ``a_k, b_k`` per class (small whole numbers:
    ties are likely)."""
    policy = draw(st.sampled_from(policies))
    if policy == "linear":
        numbers = draw(st.lists(st.integers(-2, 3), min_size=2 * classes, max_size=2 * classes))
        policy = "linear:" + ",".join(map(str, numbers))
    return policy


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_networks_match(data: st.DataObject) -> None:
    net, policy = data.draw(st.composite(random_network)())
    seed = data.draw(st.integers(0, 1000))
    check(net, policy, horizon=400.0, seed=seed)


@pytest.mark.parametrize("discipline", ["preemptive-resume", "non-preemptive"])
@pytest.mark.parametrize("policy", ["fcfs", "c-mu", "max-pressure", "linear:1,0,-1,3"])
def test_several_servers_match(discipline: str, policy: str) -> None:
    net = single_station(
        {
            "a": (2.0, {"kind": "exponential", "mean": 0.5}),
            "b": (1.5, {"kind": "hyperexponential", "mean": 1.0, "scv": 4.0}),
        },
        servers=3,
        discipline=discipline,
    )
    check(net, policy, horizon=3000.0, seed=7)


def test_growth_and_full_logs_match() -> None:
    """An overloaded station (queues of thousands, past the first buffers) and a run long
    enough to fill the kernel's logs more than once."""
    over = build(
        NetworkSpec,
        {
            "name": "overloaded",
            "engines": {"s": {"kind": "station"}},
            "classes": {
                "a": {"engine": "s", "service": {"kind": "exponential", "mean": 0.6}},
                "b": {"engine": "s", "service": {"kind": "exponential", "mean": 0.6}},
            },
            "workflows": [
                {
                    "name": "w",
                    "arrival": {"kind": "poisson", "rate": 2.0},
                    "entry": "a",
                    "after": {"a": "b", "b": "exit"},
                }
            ],
        },
    )
    check(over, "max-pressure", horizon=5000.0, seed=0)
    check(get_network("criss-cross-ih"), "c-mu", horizon=60_000.0, seed=2, samples=50)


def test_initial_jobs_and_progress_match() -> None:
    net = get_network("criss-cross")
    check(net, "max-weight", initial=[30, 5, 12], horizon=2000.0, seed=5)
    times: list[float] = []
    py, jit = both(net, "fcfs", horizon=200_000.0, seed=5)
    assert_same(py.run().result(), jit.run(progress=times.append).result())
    assert len(times) >= 2 and times == sorted(times) and times[-1] < 200_000.0


def test_auto_takes_the_compiled_loop_only_where_it_may() -> None:
    assert NetworkSimulator(get_network("criss-cross"), "c-mu", horizon=10.0).compiled
    assert NetworkSimulator(get_network("pipeline-3"), "fcfs", horizon=10.0).compiled
    assert NetworkSimulator(get_network("fork-join"), "fcfs", horizon=10.0).compiled
    spread = NetworkSimulator(get_network("replicated-3"), "fcfs", horizon=10.0)
    assert not spread.compiled
    assert why_not(spread) == "class 'chat' may be served at several stations"
    external = NetworkSimulator(get_network("criss-cross"), None, horizon=10.0)
    assert not external.compiled
    traced = NetworkSimulator(get_network("criss-cross"), "fcfs", horizon=10.0, trace=True)
    assert not traced.compiled


def test_compiled_loop_refusals_name_the_reason() -> None:
    with pytest.raises(ValueError, match="loop: compiled is not possible here: class 'chat'"):
        NetworkSimulator(get_network("replicated-3"), "fcfs", horizon=10.0, loop="compiled")
    with pytest.raises(ValueError, match="loop: unknown value 'fast'"):
        NetworkSimulator(get_network("criss-cross"), "fcfs", horizon=10.0, loop="fast")
    with pytest.raises(ValueError, match="policy 'fluid' is computed in Python"):
        NetworkSimulator(get_network("criss-cross"), "fluid", horizon=10.0, loop="compiled")


# ---------------------------------------------------------------- forks and joins


def fork_network(draw: st.DrawFn) -> NetworkSpec:
    """Stations with forks: a fork into two or three branches (a class may repeat), one
    branch looping at random before it joins, one branch forking again
    (nested)."""
    n_st = draw(st.integers(1, 3))
    stations = {f"s{i}": {"kind": "station"} for i in range(n_st)}
    for s in stations.values():
        if draw(st.booleans()):
            s["discipline"] = "non-preemptive"
        s["servers"] = draw(st.sampled_from([1, 1, 2]))
    laws = [{"kind": "exponential"}, {"kind": "deterministic"}, {"kind": "erlang", "k": 2}]
    names = ["a", "b", "c", "d", "e", "f", "g"]
    classes = {}
    for name in names:
        law = dict(draw(st.sampled_from(laws)))
        law["mean"] = draw(st.sampled_from([0.05, 0.1, 0.2]))
        classes[name] = {"engine": f"s{draw(st.integers(0, n_st - 1))}", "service": law}
    branches = draw(st.sampled_from([["b", "c"], ["b", "c", "b"], ["c", "b"]]))
    after = {
        "a": {"fork": branches, "join": "d"},
        "b": {"random": {"b": 0.3, "join": 0.7}},
        "c": {"fork": ["f", "g"], "join": "e"},
        "d": "exit",
        "e": "join",
        "f": "join",
        "g": {"random": {"join": 0.5, "g": 0.5}},
    }
    arrivals = [
        {"kind": "poisson", "rate": 1.0},
        {"kind": "renewal", "rate": 1.0, "law": {"kind": "erlang", "k": 3}},
    ]
    workflows = [
        {"name": "w", "arrival": draw(st.sampled_from(arrivals)), "entry": "a", "after": after}
    ]
    spec = {"name": "forks", "engines": stations, "classes": classes, "workflows": workflows}
    return build(NetworkSpec, spec)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_fork_networks_match(data: st.DataObject) -> None:
    net = data.draw(st.composite(fork_network)())
    policy = data.draw(st.sampled_from(POLICIES))
    check(net, policy, horizon=300.0, seed=data.draw(st.integers(0, 1000)))


@pytest.mark.parametrize("policy", ["fcfs", "max-pressure", "c-mu", "lbfs"])
def test_fork_join_matches(policy: str) -> None:
    check(get_network("fork-join"), policy, horizon=300.0, seed=4)


def test_fork_records_grow() -> None:
    """An overloaded fork-join network: hundreds of forks in progress at once."""
    check(get_network("fork-join").scaled(1.6), "fcfs", horizon=400.0, seed=1)


def test_forks_in_progress_round_trip() -> None:
    """A state with forks in progress, copied into the kernel's arrays and written back,
    is the same state."""
    from policyopt.sim.compiled_loop import LoopState, finish_compiled
    from policyopt.sim.network_sim import BLOCK, FOLD

    sim = NetworkSimulator(get_network("fork-join"), None, horizon=100.0, seed=2)
    while sim.now < 40.0 and (j := sim.advance(True)) is not None:
        sim.decide_first(sim.view.classes_at[j][0])
    before = state(sim)
    assert len(before["forks"]) > 3
    finish_compiled(LoopState(sim, BLOCK, FOLD), sim)
    assert state(sim) == before
