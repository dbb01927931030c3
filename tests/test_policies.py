"""The policy registry and the read-only view a policy reads (``docs/policies.md``).

Checked: every built-in name (and alias) builds its policy; an unknown name is refused with the
registered names; a toy policy registered from this file runs through ``make_policy`` and the
simulator, exactly as the built-in policy it mimics; registration rules (duplicates, names,
lazy ``"module:attribute"`` factories); ``import policyopt.policies`` imports neither
``policyopt.learn`` nor torch, yet ``ppo:DIR`` is found; and the view exposes the simulator's
state read-only, with no way to the simulator itself.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from policyopt.errors import SpecError
from policyopt.model.network import NetworkSpec
from policyopt.model.networks_library import get_network
from policyopt.policies import (
    FCFS,
    EngineInfo,
    FluidTracking,
    MaxPressure,
    NetworkView,
    Policy,
    StaticPriority,
    make_policy,
    register_policy,
    registered_policies,
    unregister_policy,
)
from policyopt.sim.network_sim import NetworkSimulator, simulate_network


class ReverseIndex(Policy):
    """Toy policy: the engine's classes by decreasing class index."""

    name = "reverse-index"

    def __init__(self) -> None:
        self.calls = 0

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The classes of ``engine``, highest index first."""
        self.calls += 1
        return sorted(view.classes_at[engine], reverse=True)


class FirstOf(Policy):
    """Toy prefixed family ``test-first:CLASS``: that class first, the rest by index."""

    def __init__(self, cls: str) -> None:
        self.cls = cls
        self.name = f"test-first:{cls}"
        self.k = -1

    def bind(self, net: NetworkSpec) -> None:
        """Find the class's index."""
        self.k = list(net.topology.classes).index(self.cls)

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """``cls`` first if the engine serves it, then the others by index."""
        return sorted(view.classes_at[engine], key=lambda k: (k != self.k, k))


@pytest.fixture
def toys() -> Iterator[None]:
    """Register the toy policies for one test, then forget them."""
    register_policy("test-reverse", ReverseIndex, aliases=("test-rev",))
    register_policy("test-first:", FirstOf, arg="CLASS")
    yield
    unregister_policy("test-reverse")
    unregister_policy("test-first:")


def test_built_in_names_and_aliases() -> None:
    assert isinstance(make_policy("fcfs"), FCFS)
    for name in ("max-pressure", "maxpressure", "mp", " mp "):
        assert isinstance(make_policy(name), MaxPressure)
    exit_first = make_policy("priority:exit")
    assert isinstance(exit_first, StaticPriority) and exit_first.name == "priority:exit"
    fluid, fluid7 = make_policy("fluid"), make_policy("fluid:7")
    assert isinstance(fluid, FluidTracking) and isinstance(fluid7, FluidTracking)
    assert (fluid.every, fluid7.every, fluid7.name) == (50, 7, "fluid:7")
    assert make_policy("fcfs") is not make_policy("fcfs")  # a new policy each time
    policy = MaxPressure()
    assert make_policy(policy) is policy
    listed = registered_policies()
    assert listed[:3] == ["fcfs", "max-pressure (or maxpressure, mp)", "priority:A>B>C|exit|entry"]
    assert {"fluid", "fluid:N", "ppo:DIR", "a2c:DIR", "maskable-ppo:DIR"} <= set(listed)


def test_unknown_names_list_the_registry() -> None:
    with pytest.raises(SpecError, match="unknown policy 'shortest-job-first'") as err:
        make_policy("shortest-job-first")
    for name in ("fcfs", "max-pressure (or maxpressure, mp)", "fluid:N", "maskable-ppo:DIR"):
        assert name in str(err.value)
    with pytest.raises(SpecError, match="unknown policy 'priority:'"):
        make_policy("priority:")  # a prefix needs its argument
    with pytest.raises(SpecError, match="must be a whole number"):
        make_policy("fluid:often")


def test_a_toy_policy_registered_here_runs_in_the_simulator(toys: None) -> None:
    net = get_network("rybko-stolyar")
    toy = make_policy("test-reverse")
    assert isinstance(toy, ReverseIndex) and isinstance(make_policy("test-rev"), ReverseIndex)
    assert "test-reverse (or test-rev)" in registered_policies()
    assert "test-first:CLASS" in registered_policies()
    res = NetworkSimulator(net, toy, horizon=300.0, seed=1).run().result()
    assert toy.calls > 100
    # the toy is the static priority that lists the classes by decreasing index: same run
    ranked = ">".join(reversed(net.topology.classes))
    ref = simulate_network(net, f"priority:{ranked}", horizon=300.0, seed=1)
    assert res.mean_jobs == ref.mean_jobs and res.holding_cost == ref.holding_cost
    # by name, and a prefixed family
    by_name = simulate_network(net, "test-reverse", horizon=300.0, seed=1)
    assert by_name.mean_jobs == ref.mean_jobs and by_name.policy == "reverse-index"
    first = simulate_network(net, "test-first:B2", horizon=300.0, seed=1)
    assert first.mean_jobs == simulate_network(net, "priority:B2", horizon=300.0, seed=1).mean_jobs
    assert first.policy == "test-first:B2"


def test_registration_rules(toys: None) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_policy("fcfs", ReverseIndex)
    with pytest.raises(ValueError, match="already registered"):
        register_policy("test-other", ReverseIndex, aliases=("test-rev",))
    register_policy("test-reverse", FCFS, replace=True)  # the old alias goes with it
    assert isinstance(make_policy("test-reverse"), FCFS)
    with pytest.raises(SpecError, match="unknown policy 'test-rev'"):
        make_policy("test-rev")
    for bad in ("", "two words", "a:b", "x:y:"):
        with pytest.raises(ValueError):
            register_policy(bad, FCFS)
    with pytest.raises(ValueError, match="both be prefixes"):
        register_policy("test-p:", FirstOf, aliases=("test-p",))
    with pytest.raises(ValueError, match="module:attribute"):
        register_policy("test-lazy", "policyopt.policies.FCFS")
    register_policy("test-not-a-policy", dict)
    try:
        with pytest.raises(TypeError, match="not a Policy"):
            make_policy("test-not-a-policy")
    finally:
        unregister_policy("test-not-a-policy")
    with pytest.raises(KeyError):
        unregister_policy("test-never-registered")


def test_a_lazy_factory_is_imported_on_first_use() -> None:
    register_policy("test-lazy", f"{__name__}:ReverseIndex")
    register_policy("test-lazy-missing", "policyopt.no_such_module:Policy")
    try:
        assert isinstance(make_policy("test-lazy"), ReverseIndex)
        with pytest.raises(ModuleNotFoundError):
            make_policy("test-lazy-missing")
    finally:
        unregister_policy("test-lazy")
        unregister_policy("test-lazy-missing")


def test_policies_import_stays_light_and_still_finds_the_agents() -> None:
    """``policyopt.policies`` imports neither policyopt.learn nor torch; ``ppo:DIR`` still
    reaches the agent loader (here: a missing directory, refused before torch is needed)."""
    code = "\n".join(
        [
            "import sys",
            "from policyopt.errors import SpecError",
            "from policyopt.policies import make_policy",
            "assert 'policyopt.learn' not in sys.modules and 'torch' not in sys.modules",
            "try:",
            "    make_policy('ppo:/no/such/model/dir')",
            "except SpecError as err:",
            "    assert 'no model directory' in str(err), err",
            "else:",
            "    raise AssertionError('no error')",
            "assert 'policyopt.learn' in sys.modules and 'torch' not in sys.modules",
        ]
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- the view


def test_the_view_is_a_read_only_window_on_the_simulator() -> None:
    net = get_network("rybko-stolyar")
    sim = NetworkSimulator(net, None, horizon=50.0, warmup=0.0, seed=3)
    view = sim.view
    assert not hasattr(view, "simulator")
    for array in (view.jobs, view.P, view.rate):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1.0
    with pytest.raises(AttributeError):
        view.jobs = np.zeros(4)  # type: ignore[misc]
    assert view.horizon == 50.0
    assert view.engines == tuple(
        EngineInfo(name, view.classes_at[j], True, 512, True, True, False)
        for j, name in enumerate(net.topology.engines)
    )  # default engines: budget 512, Sarathi-Serve (decode first, mixes prefill and decode)
    decisions = 0
    while (j := sim.advance()) is not None:
        assert view.now == sim.now
        np.testing.assert_array_equal(view.jobs, sim.jobs)  # the live counts
        assert view.classes_with_work(j) == sim.classes_with_work(j)
        assert view.class_state_flat() == sim.class_state_flat()
        for mine, theirs in zip(view.class_state(), sim.class_state(), strict=True):
            np.testing.assert_array_equal(mine, theirs)
        eng = sim.engines[j]
        assert view.engine_jobs(j) == (eng.n_wait, eng.n_dec)
        sim.decide(view.fcfs_order(j))  # FCFS through the view
        decisions += 1
    assert decisions > 20
    fcfs = simulate_network(net, "fcfs", horizon=50.0, warmup=0.0, seed=3)
    assert sim.result().mean_jobs == fcfs.mean_jobs  # fcfs_order is what FCFS does


def test_a_view_without_a_simulator() -> None:
    net = get_network("criss-cross")
    jobs = np.array([1.0, 2.0, 3.0])
    view = NetworkView(net, jobs, now=2.5)
    assert view.now == 2.5 and view.horizon == float("inf")
    view.now = 4.0
    assert view.now == 4.0
    jobs[0] = 7.0
    assert view.jobs[0] == 7.0 and not view.jobs.flags.writeable
    assert jobs.flags.writeable  # the caller's array stays writable
    assert all(not e.llm and e.token_budget == 0 for e in view.engines)  # stations
    for query in (view.class_state, view.class_state_flat):
        with pytest.raises(RuntimeError, match="no simulator"):
            query()
    for query_at in (view.classes_with_work, view.fcfs_order, view.engine_jobs):
        with pytest.raises(RuntimeError, match="no simulator"):
            query_at(0)
