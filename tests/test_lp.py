"""Traffic equations and the LPs: static planning, batch-size region, fluid control."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from scipy.optimize import linprog

from policyopt.model import EngineSpec, LLMEngine, NetworkSpec, build, get_network
from policyopt.model.networks_library import _llm_mu
from policyopt.solvers.batch_size_region import BatchRegionLP, batch_configurations, ray_capacity
from policyopt.solvers.capacity import llm_capacity, token_capacity
from policyopt.solvers.fluid_lp import FluidLP
from policyopt.solvers.lp import LPError
from policyopt.solvers.static_planning import StaticPlanningLP, static_plan
from policyopt.solvers.traffic import class_rates, engine_capacity, traffic

FIXED_ROUTING = [
    "rybko-stolyar",
    "fork-join",
    "pipeline-3",
    "criss-cross",
    "classic-rybko-stolyar",
    "lu-kumar",
    "reentrant-4",
    "extended-six-class-3",
]


def station_net(
    classes: dict[str, tuple[str | list[str], float]],
    workflows: list[tuple[float, str, dict[str, Any]]],
    holding: dict[str, float] | None = None,
) -> NetworkSpec:
    """A station network: classes ``name: (station or stations, mean service s)``."""
    stations = sorted(
        {s for where, _ in classes.values() for s in ([where] if isinstance(where, str) else where)}
    )
    spec_classes: dict[str, Any] = {}
    for name, (where, mean) in classes.items():
        spec = {"service": {"mean": mean}, "holding_cost": (holding or {}).get(name, 1.0)}
        spec.update({"engine": where} if isinstance(where, str) else {"engines": where})
        spec_classes[name] = spec
    return build(
        NetworkSpec,
        {
            "engines": {s: {"kind": "station"} for s in stations},
            "classes": spec_classes,
            "workflows": [
                {
                    "name": f"w{i}",
                    "arrival": {"kind": "poisson", "rate": rate},
                    "entry": entry,
                    "after": after,
                }
                for i, (rate, entry, after) in enumerate(workflows)
            ],
        },
    )


def linprog_theta(eligible: list[list[int]], d: np.ndarray, mu: np.ndarray) -> float:
    """``theta*`` of the static planning LP by scipy's linprog (the reference)."""
    pairs = [(k, j) for k, e in enumerate(eligible) for j in e]
    n = len(pairs) + 1  # x..., theta
    a_eq = np.zeros((len(eligible), n))
    a_ub = np.zeros((len(mu), n))
    for i, (k, j) in enumerate(pairs):
        a_eq[k, i] = 1.0
        a_ub[j, i] = 1.0
    a_eq[:, -1] = -d
    cost = np.zeros(n)
    cost[-1] = -1.0
    res = linprog(
        cost,
        A_ub=a_ub,
        b_ub=mu,
        A_eq=a_eq,
        b_eq=np.zeros(len(eligible)),
        bounds=[(0, None)] * n,
        method="highs",
    )
    assert res.status == 0
    return float(res.x[-1])


def random_instance(rng: np.random.Generator, n_cls: int, n_eng: int) -> tuple[Any, ...]:
    eligible = [
        sorted(rng.choice(n_eng, size=int(rng.integers(1, min(3, n_eng) + 1)), replace=False))
        for _ in range(n_cls)
    ]
    d = rng.uniform(0.1, 2.0, n_cls)
    mu = rng.uniform(2.0, 6.0, n_eng)
    return eligible, d, mu


# --------------------------------------------------------------------------------------------
# traffic equations


def test_traffic_fork_join_by_hand() -> None:
    net = get_network("fork-join")
    tr = traffic(net)
    lam = net.workflows[0].rate
    # the planner forks one job to each tool; the summarizer gets one job per fork
    assert tr.rates == pytest.approx([lam] * 5, rel=1e-12)
    mu = token_capacity(EngineSpec())[0]
    assert tr.mu == pytest.approx([mu, mu])
    assert tr.load("orchestrator") == pytest.approx(0.9, abs=1e-9)
    assert tr.load("tools") == pytest.approx(0.9 * 1120 / 1312, abs=1e-9)
    assert tr.spectral_radius == 0.0


def test_traffic_random_routing_and_forks_by_hand() -> None:
    # a -> {b: 0.3, c: 0.7}; c -> {a: 0.2, exit: 0.8}; b -> fork [d, d, e] join f;
    # d -> join; e -> {e: 0.5, join: 0.5}; f -> exit
    net = station_net(
        {
            "a": ("s1", 0.1),
            "b": ("s1", 0.2),
            "c": ("s2", 0.3),
            "d": ("s2", 0.1),
            "e": ("s1", 0.1),
            "f": ("s2", 0.2),
        },
        [
            (
                2.0,
                "a",
                {
                    "a": {"random": {"b": 0.3, "c": 0.7}},
                    "c": {"random": {"a": 0.2, "exit": 0.8}},
                    "b": {"fork": ["d", "d", "e"], "join": "f"},
                    "d": "join",
                    "e": {"random": {"e": 0.5, "join": 0.5}},
                    "f": "exit",
                },
            )
        ],
    )
    lam_a = 2.0 / (1 - 0.7 * 0.2)
    lam_b = 0.3 * lam_a
    expected = {
        "a": lam_a,
        "b": lam_b,
        "c": 0.7 * lam_a,
        "d": 2 * lam_b,
        "e": 2 * lam_b,
        "f": lam_b,
    }
    tr = traffic(net)
    for cls, rate in expected.items():
        assert tr.rate(cls) == pytest.approx(rate, rel=1e-12), cls
    # spectral radius: the a <-> c loop (0.14 on the cycle) and e's self-loop (0.5)
    assert tr.spectral_radius == pytest.approx(0.5)
    # loads: station s1 serves a, b, e; s2 serves c, d, f (mu = 1)
    s1 = 0.1 * lam_a + 0.2 * lam_b + 0.1 * 2 * lam_b
    assert tr.load("s1") == pytest.approx(s1)
    assert class_rates(net, alpha=np.array([4.0, 0, 0, 0, 0, 0])) == pytest.approx(2 * tr.rates)


def test_rybko_stolyar_loads_and_virtual_station() -> None:
    tr = traffic(get_network("rybko-stolyar"))
    assert tr.loads == pytest.approx([0.9, 0.9], abs=1e-12)
    virtual = tr.virtual_station_load(["A2", "B2"])
    assert virtual > 1.0
    assert virtual == pytest.approx(1.4, abs=1e-12)
    classic = traffic(get_network("classic-rybko-stolyar"))
    assert classic.loads == pytest.approx([0.7, 0.7])
    assert classic.virtual_station_load(["c2", "c4"]) == pytest.approx(1.2)


def test_library_loads() -> None:
    for name in [
        "criss-cross",
        "reentrant-2",
        "reentrant-6",
        "extended-six-class-4",
        "pipeline-3",
        "replicated-3",
    ]:
        assert traffic(get_network(name)).loads == pytest.approx(0.9, abs=1e-9), name
    assert traffic(get_network("lu-kumar")).loads == pytest.approx([0.7, 0.7])


# --------------------------------------------------------------------------------------------
# static planning LP


def test_theta_equals_one_over_max_load_on_fixed_routing() -> None:
    for name in FIXED_ROUTING:
        net = get_network(name)
        tr = traffic(net)
        plan = static_plan(net)
        assert plan.status == "optimal" and plan.solver == "HIGHS"
        assert plan.theta == pytest.approx(1.0 / tr.max_load, rel=1e-9), name
        # utilizations at the nominal rates are the nominal loads
        for e in tr.engines:
            assert plan.utilization[e] == pytest.approx(tr.load(e), rel=1e-9)
        assert set(plan.bottlenecks) >= {tr.engines[int(np.argmax(tr.loads))]}
    # random fixed-routing station networks
    rng = np.random.default_rng(11)
    for _ in range(5):
        n = int(rng.integers(2, 8))
        classes = {
            f"c{i}": (f"s{rng.integers(0, 3)}", float(rng.uniform(0.05, 0.5))) for i in range(n)
        }
        after = {f"c{i}": f"c{i + 1}" for i in range(n - 1)} | {f"c{n - 1}": "exit"}
        net = station_net(classes, [(float(rng.uniform(0.2, 1.0)), "c0", after)])
        assert static_plan(net).theta == pytest.approx(1 / traffic(net).max_load, rel=1e-9)


def test_theta_matches_linprog_with_eligible_sets() -> None:
    rng = np.random.default_rng(2024)
    for n_cls, n_eng in [(5, 2), (12, 4), (40, 8), (80, 15)]:
        eligible, d, mu = random_instance(rng, n_cls, n_eng)
        lp = StaticPlanningLP(eligible, d, mu)
        plan = lp.solve()
        assert plan.theta == pytest.approx(linprog_theta(eligible, d, mu), rel=1e-8)
        # the reported assignment carries exactly each class's nominal work
        for k, name in enumerate(plan.classes):
            total = sum(v for (c, _), v in plan.assignment.items() if c == name)
            assert total == pytest.approx(d[k], rel=1e-9)
        assert max(plan.utilization.values()) == pytest.approx(1 / plan.theta, rel=1e-6)
        # a re-solve with new rates on the same compiled problem matches a fresh reference
        d2 = rng.uniform(0.1, 2.0, n_cls)
        assert lp.solve(offered=d2).theta == pytest.approx(
            linprog_theta(eligible, d2, mu), rel=1e-8
        )
        assert lp.problem.is_dpp() and lp.solves == 2


def test_duals_are_finite_differences_of_theta() -> None:
    rng = np.random.default_rng(5)
    for n_cls, n_eng in [(6, 3), (20, 5), (30, 6)]:
        eligible, d, mu = random_instance(rng, n_cls, n_eng)
        lp = StaticPlanningLP(eligible, d, mu)
        plan = lp.solve()
        duals = np.array([plan.duals[e] for e in plan.engines])
        # strong duality: theta* = sum_j y_j mu_j
        assert float(duals @ mu) == pytest.approx(plan.theta, rel=1e-7)
        assert duals.max() > 0
        h = 1e-4  # theta*(mu) is piecewise linear: exact away from its (rare) kinks
        for j in range(n_eng):
            up, down = mu.copy(), mu.copy()
            up[j] += h
            down[j] -= h
            right = (lp.solve(mu=up).theta - plan.theta) / h
            left = (plan.theta - lp.solve(mu=down).theta) / h
            # theta*(mu) is concave: the dual lies between the one-sided derivatives
            assert right - 1e-7 <= duals[j] <= left + 1e-7, (j, right, duals[j], left)
        lp.solve(mu=mu)
    # a nondegenerate case: the fork-join orchestrator is the only bottleneck
    plan = static_plan(get_network("fork-join"))
    assert plan.bottlenecks == ("orchestrator",)
    assert plan.duals["tools"] == 0.0
    assert plan.duals["orchestrator"] == pytest.approx(plan.theta / plan.mu[0], rel=1e-9)
    assert plan.shares["orchestrator"] == pytest.approx(1.0)


def test_replicated_engines_split_evenly() -> None:
    net = get_network("replicated-4")
    plan = static_plan(net)
    assert plan.theta == pytest.approx(1 / 0.9, rel=1e-9)
    assert sum(plan.fractions.values()) == pytest.approx(1.0)
    assert set(plan.saturated) == {"e1", "e2", "e3", "e4"}
    # K engines carry K times one engine's rate: theta* x rate = 4 lambda*
    lam_star = token_capacity(EngineSpec())[0] / 241.0
    assert plan.theta * net.workflows[0].rate == pytest.approx(4 * lam_star, rel=1e-9)


def test_sweep_over_rates_reuses_the_compiled_problem() -> None:
    net = get_network("fork-join")
    lp = StaticPlanningLP.from_network(net)
    base = lp.solve().theta
    rates = traffic(net).rates
    for scale in (0.5, 1.0, 2.0, 4.0):
        assert lp.solve(rates=scale * rates).theta == pytest.approx(base / scale, rel=1e-9)
    assert lp.problem.is_dpp()


def test_lp_errors_are_explained() -> None:
    lp = StaticPlanningLP([[0], [0, 1]], [1.0, 1.0], [2.0, 2.0])
    with pytest.raises(LPError, match="unbounded: no class brings any work"):
        lp.solve(offered=[0.0, 0.0])
    with pytest.raises(LPError, match="positive capacity"):
        lp.solve(mu=[1.0, -1.0])
    with pytest.raises(LPError, match="no eligible engine"):
        StaticPlanningLP([[0], []], [1.0, 1.0], [1.0])
    with pytest.raises(LPError, match="not installed"):
        StaticPlanningLP([[0]], [1.0], [1.0], solver="NOSUCHSOLVER")
    # CLARABEL gives the same theta (and is the fallback without HiGHS)
    assert StaticPlanningLP(
        [[0], [0, 1]], [1.0, 1.0], [2.0, 2.0], solver="CLARABEL"
    ).solve().theta == pytest.approx(2.0, rel=1e-6)


# --------------------------------------------------------------------------------------------
# batch-size region


def test_region_without_batch_limit_is_the_token_capacity() -> None:
    engine = EngineSpec()
    mu = token_capacity(engine)[0]
    for share in (0.0, 0.2, 0.5, 0.9, 1.0):
        assert ray_capacity(engine, share) == pytest.approx(mu, rel=1e-9)
    lp = BatchRegionLP(engine)
    inside = lp.solve(0.5 * mu, 0.4 * mu)
    assert inside.inside and inside.theta == pytest.approx(1 / 0.9, rel=1e-9)
    outside = lp.solve(0.6 * mu, 0.5 * mu)
    assert not outside.inside and outside.theta < 1


def test_region_with_max_seqs_matches_brute_force() -> None:
    """The extreme configurations give the same region as every configuration (x, y, r)."""
    engine = build(
        EngineSpec,
        {
            "token_budget": 16,
            "max_seqs": 4,
            "batch_time": {"kind": "staircase", "c_ms": 5, "a_ms": 10, "b0": 4},
        },
    )
    for chunk in (None, 3):
        cmax = chunk or 16
        every = [
            (x, y, math.ceil(x / cmax))
            for x in range(17)
            for y in range(17)
            if 0 < x + y <= 16 and y + math.ceil(x / cmax) <= 4
        ]
        t = np.array([engine.batch_time.seconds(x, y) for x, y, _ in every])
        rates = np.array([[x, y] for x, y, _ in every]) / t[:, None]
        lp = BatchRegionLP(engine, max_chunk=chunk)
        assert len(lp.configs) <= 2 * 16
        for target in ([300.0, 50.0], [100.0, 150.0], [0.0, 80.0], [900.0, 0.0]):
            # reference: max theta s.t. rates^T w >= theta target, sum w <= 1
            n = len(every)
            cost = np.zeros(n + 1)
            cost[-1] = -1
            a_ub = np.vstack(
                [np.hstack([-rates.T, np.array(target)[:, None]]), np.hstack([np.ones(n), [0.0]])]
            )
            ref = linprog(
                cost, A_ub=a_ub, b_ub=[0, 0, 1], bounds=[(0, None)] * (n + 1), method="highs"
            )
            got = lp.solve(*target)
            assert got.theta == pytest.approx(-ref.fun, rel=1e-8), (chunk, target)
            assert sum(c[4] for c in got.corners) <= 1 + 1e-9
    # decode-only capacity with k_max = 4: at most 4 decode tokens per batch
    decode_only = BatchRegionLP(engine).solve(0.0, 1.0).theta
    assert decode_only == pytest.approx(4 / engine.batch_time.seconds(0, 4), rel=1e-9)
    assert batch_configurations(engine)[:, 1].max() == 4


def test_max_seqs_lowers_an_engine_capacity() -> None:
    limited = build(
        NetworkSpec,
        {
            "engines": {"e": {"max_seqs": 16}},
            "classes": {"c": {"engine": "e"}},
            "workflows": [
                {
                    "name": "w",
                    "arrival": {"kind": "poisson", "rate": 1.0},
                    "entry": "c",
                    "after": {"c": "exit"},
                }
            ],
        },
    )
    tr = traffic(limited)
    full = token_capacity(EngineSpec())[0]
    assert tr.mu[0] < full
    share = tr.prefill_share[0]
    assert share == pytest.approx(129 / 241, rel=1e-9)
    assert tr.mu[0] == pytest.approx(ray_capacity(EngineSpec(max_seqs=16), share), rel=1e-12)
    assert engine_capacity(limited.engines["e"], share) == pytest.approx(tr.mu[0])
    assert llm_capacity(EngineSpec(max_seqs=16), share) == pytest.approx(tr.mu[0], rel=1e-12)


def test_one_capacity_formula_for_the_library_and_the_solvers() -> None:
    """The library's rates and the solvers' capacities come from EngineSpec.token_capacity."""
    engine = EngineSpec()
    assert _llm_mu(LLMEngine()) == token_capacity(engine)[0] == engine.token_capacity()[0]
    assert llm_capacity(engine, 0.3) == token_capacity(engine, 0.3)[0]
    assert traffic(get_network("rybko-stolyar")).mu[0] == engine.token_capacity()[0]


def test_capacity_and_traffic_load_without_cvxpy() -> None:
    """The LP modules load CVXPY; the model, capacity and traffic modules do not."""
    code = (
        "import sys, policyopt.model, policyopt.solvers, policyopt.solvers.traffic; "
        "print('cvxpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# fluid control LP


def test_fluid_single_class_drains_at_mu_minus_lambda() -> None:
    alpha, mean = 0.6, 0.5  # station capacity 1 s/s: mu = 1 / mean = 2 jobs/s
    net = station_net({"a": ("s", mean)}, [(alpha, "a", {"a": "exit"})])
    for dt in (0.25, 1.0, 2.0):
        lp = FluidLP(net, horizon=4 * dt, step=dt)
        for q0 in (0.0, 0.5, 3.0, 10.0):
            plan = lp.solve([q0])
            assert plan.status == "optimal"
            expected = max(0.0, q0 + dt * (alpha - 1 / mean))
            assert plan.first_queue()[0] == pytest.approx(expected, abs=1e-7), (dt, q0)
            if q0 + dt * (alpha - 1 / mean) > 0:
                assert plan.allocation[("a", "s")] == pytest.approx(1.0, abs=1e-9)
            assert plan.queues.shape == (4, 1)


def test_fluid_lp_follows_the_c_mu_rule_at_one_station() -> None:
    # two classes at one station, both exit: serve the larger h * mu first
    net = station_net(
        {"fast": ("s", 0.5), "slow": ("s", 1.0)},
        [(0.2, "fast", {"fast": "exit"}), (0.2, "slow", {"slow": "exit"})],
        holding={"fast": 1.0, "slow": 1.5},
    )
    lp = FluidLP(net, horizon=10.0, step=0.5)
    plan = lp.solve([5.0, 5.0])  # h mu: fast 1 * 2 = 2 > slow 1.5 * 1 = 1.5
    assert plan.allocation[("fast", "s")] == pytest.approx(1.0, abs=1e-7)
    assert plan.allocation[("slow", "s")] == pytest.approx(0.0, abs=1e-7)
    assert plan.completion_rates == pytest.approx([2.0, 0.0], abs=1e-7)
    # re-solve from another state on the same compiled LP: fast empty -> serve slow
    plan = lp.solve([0.0, 5.0])
    assert plan.allocation[("fast", "s")] == pytest.approx(0.2 * 0.5, abs=1e-7)
    assert plan.allocation[("slow", "s")] == pytest.approx(0.9, abs=1e-7)
    # overload: total fluid grows at the rate the LP cannot remove
    over = lp.solve([1.0, 1.0], alpha=[2.0, 2.0])
    assert over.queues[-1].sum() > over.queues[0].sum()


def test_fluid_lp_on_a_network_conserves_fluid() -> None:
    net = get_network("criss-cross")
    lp = FluidLP(net, horizon=5.0, step=0.5)
    q0 = np.array([4.0, 2.0, 3.0])
    plan = lp.solve(q0)
    c = plan.completion_rates
    # class 2 gains what class 1 completes; every station within capacity
    alpha = np.array([0.9, 0.0, 0.9])
    inflow = alpha + np.array([0.0, c[0], 0.0])
    assert plan.first_queue() == pytest.approx(q0 + 0.5 * (inflow - c), abs=1e-7)
    assert plan.allocation[("c1", "s1")] + plan.allocation[("c3", "s1")] <= 1 + 1e-9
    with pytest.raises(LPError, match="finite values >= 0"):
        lp.solve([-1.0, 0.0, 0.0])
