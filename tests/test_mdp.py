"""The optimal-control solver of small station networks (policyopt.solvers.mdp): closed forms,
the compiled sweeps against the numpy operator, the stationary distribution against the value
iteration, the optimal table run in the simulator, bad input and the command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyopt.benchmark.instances import CRISS_CROSS_OPTIMUM, criss_cross_continuing_jobs
from policyopt.cli import main
from policyopt.errors import SpecError
from policyopt.model.config import build
from policyopt.model.network import NetworkSpec
from policyopt.model.networks_library import resolve_network, single_station
from policyopt.optimal_policy import ActionTable, TablePolicy, evaluate_policy, policy_table
from policyopt.policies import MaxPressure
from policyopt.sim.network_sim import NetworkSimulator
from policyopt.solvers import mdp
from policyopt.solvers.queueing import mm1_jobs, priority_jobs


def exp(mean: float) -> dict[str, object]:
    return {"kind": "exponential", "mean": mean}


def two_class() -> NetworkSpec:
    """One station, class a (rate 0.3/s, mean 1 s) and b (0.4/s, mean 0.5 s): load 0.5."""
    return single_station({"a": (0.3, exp(1.0)), "b": (0.4, exp(0.5))})


def routed(p_back: float) -> NetworkSpec:
    """Two stations; u (s1) goes to v (s2); v leaves, or returns to u with ``p_back``, or
    repeats itself; w at s1 leaves."""
    rest = 1.0 - p_back
    return build(
        NetworkSpec,
        {
            "name": "routed",
            "engines": {"s1": {"kind": "station"}, "s2": {"kind": "station"}},
            "classes": {
                "u": {"engine": "s1", "service": exp(0.4)},
                "v": {"engine": "s2", "service": exp(0.3)},
                "w": {"engine": "s1", "service": exp(0.7)},
            },
            "workflows": [
                {
                    "name": "one",
                    "arrival": {"kind": "poisson", "rate": 0.5},
                    "entry": "u",
                    "after": {
                        "u": "v",
                        "v": {"random": {"exit": rest / 2, "u": p_back, "v": rest / 2}},
                    },
                },
                {
                    "name": "two",
                    "arrival": {"kind": "poisson", "rate": 0.3},
                    "entry": "w",
                    "after": {"w": "exit"},
                },
            ],
        },
    )


# ------------------------------------------------------------------ closed forms
def test_mm1_mean_jobs() -> None:
    """One class: the M/M/1 mean rho / (1 - rho), inside the bounds (the cap's mass is
    negligible at 200 jobs and load 0.5)."""
    net = single_station({"a": (0.5, exp(1.0))})
    sol = mdp.solve(net, 200, tol=1e-7)
    assert sol.converged
    assert sol.lower - 1e-9 <= mm1_jobs(0.5, 1.0) <= sol.upper + 1e-9
    assert sol.cost == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize(("cap", "loss"), [(3, 0.0), (3, 20.0), (8, 5.0)])
def test_truncated_mm1_with_loss_cost(cap: int, loss: float) -> None:
    """One class truncated at ``cap`` (M/M/1/cap at load 0.8), each lost arrival charged
    ``loss``: the cost is ``E[x] + lambda * loss * P(x = cap)`` from the truncated geometric
    distribution, and the stationary distribution gives it again."""
    lam = 0.8
    net = single_station({"a": (lam, exp(1.0))})
    pi = lam ** np.arange(cap + 1)
    pi /= pi.sum()
    exact = float(pi @ np.arange(cap + 1)) + lam * loss * float(pi[-1])
    sol = mdp.solve(mdp.chain_model(net, cap, loss), tol=1e-9)
    assert sol.cost == pytest.approx(exact, rel=1e-7)
    assert mdp.mean_cost(sol.model, mdp.stationary(sol, tol=1e-13)) == pytest.approx(exact)


def test_loss_cost_stops_keeping_a_class_full() -> None:
    """Without a charge for lost arrivals the truncated optimum of a tight truncation gains
    by losing arrivals; charged for them, it loses fewer (it sits at a cap less) and its
    cost counts the charges (the stationary cost agrees)."""
    net = resolve_network("criss-cross")
    free = mdp.solve(mdp.chain_model(net, 4), tol=1e-7)
    charged = mdp.solve(mdp.chain_model(net, 4, 50.0), tol=1e-7)
    pi_free, pi_charged = mdp.stationary(free), mdp.stationary(charged)
    assert mdp.at_cap(charged.model, pi_charged) < mdp.at_cap(free.model, pi_free)
    assert charged.cost > free.cost
    assert mdp.mean_cost(charged.model, pi_charged) == pytest.approx(charged.cost, rel=1e-5)


def test_priority_matches_preemptive_priority_formula() -> None:
    """A static priority at one exponential station: the preemptive-resume priority formula
    per class, summed."""
    net = two_class()
    for order, rates, means in (
        (["b", "a"], [0.4, 0.3], [0.5, 1.0]),
        (["a", "b"], [0.3, 0.4], [1.0, 0.5]),
    ):
        sol = mdp.evaluate(net, order, 80, tol=1e-8)
        second = [2 * m * m for m in means]
        exact = sum(priority_jobs(rates, means, second, preemptive=True))
        assert sol.cost == pytest.approx(exact, rel=1e-6), order


def test_optimal_is_the_c_mu_rule() -> None:
    """At one station with linear holding costs, the c-mu rule is optimal (Cox and Smith):
    the solver's cost is that of b first (mu 2 against 1), and it serves b whenever b waits."""
    net = two_class()
    sol = mdp.solve(net, 80, tol=1e-8)
    cmu = mdp.evaluate(net, ["b", "a"], 80, tol=1e-8)
    assert sol.cost == pytest.approx(cmu.cost, rel=1e-6)
    assert sol.cost < mdp.evaluate(net, ["a", "b"], 80, tol=1e-8).cost
    for x in [(1, 1), (5, 3), (0, 2), (7, 0)]:
        served = sol.action(x)[0]
        assert served == (1 if x[1] > 0 else 0)


@pytest.mark.parametrize(("regime", "caps"), [("il", 15), ("bl", 15), ("im", 25), ("bm", 30)])
def test_criss_cross_optimum_matches_published_dp(regime: str, caps: int) -> None:
    """Dai and Gluzman's dynamic-programming optimum of the criss-cross network (given to
    three decimals) at the four regimes whose queues the caps hold."""
    net = resolve_network(f"criss-cross-{regime}")
    sol = mdp.solve(net, caps, tol=1e-6)
    assert sol.cost == pytest.approx(CRISS_CROSS_OPTIMUM[regime], abs=6e-4)


def test_criss_cross_continuing_priority_matches_exact_value() -> None:
    """The preemptive priority to c1 at s1 of the criss-cross network has an exact mean
    (M/M/1 queues and Burke's theorem): 3 jobs in the balanced medium regime."""
    net = resolve_network("criss-cross-bm")
    sol = mdp.evaluate(net, ["c1", "c3", "c2"], 40, tol=1e-7)
    assert sol.cost == pytest.approx(criss_cross_continuing_jobs(0.6, 1.0), rel=1e-4)
    assert criss_cross_continuing_jobs(0.6, 1.0) == pytest.approx(3.0)


# ------------------------------------------------------------------ two paths
NETWORKS = ["criss-cross", "lu-kumar", "classic-rybko-stolyar", "reentrant-2"]


@pytest.mark.parametrize("name", NETWORKS)
def test_compiled_sweep_matches_numpy_operator(name: str) -> None:
    """One compiled sweep from a random V gives the numpy operator's T V and actions, for
    the optimal choice and for a priority."""
    net = resolve_network(name)
    model = mdp.chain_model(net, 4)
    rng = np.random.default_rng(0)
    for rank in (None, list(rng.permutation(len(model.classes)))):
        V = rng.random(model.n_states)
        ref_tv, ref_act = mdp.bellman_reference(model, V, rank)
        got = V.copy()
        tv = np.zeros_like(V)
        act = np.zeros((model.n_states, len(model.stations)), dtype=np.int64)
        r = np.full(len(model.classes), -1) if rank is None else np.asarray(rank)
        fixed = np.zeros((1, len(model.stations)), dtype=np.int64)
        args = mdp.kernel_args(model, r.astype(np.int64), fixed)
        lo, hi = mdp._kernel()(got, tv, act, 1, *args)
        np.testing.assert_allclose(tv, ref_tv, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(act, ref_act)
        assert lo == pytest.approx((ref_tv - V).min()) and hi == pytest.approx((ref_tv - V).max())


def test_parallel_sweeps_are_bit_identical() -> None:
    """Two threads (the states split into two ranges) give the same bounds, values and
    actions as one, bit for bit: for the optimum, a priority and a policy table."""
    if mdp.max_threads() < 2:
        pytest.skip("numba has one thread here")
    net = resolve_network("lu-kumar")
    model = mdp.chain_model(net, 7, 30.0)
    table = policy_table(net, model, "max-pressure")
    for run in (
        lambda t: mdp.solve(model, tol=1e-6, threads=t),
        lambda t: mdp.evaluate(model, ["c4", "c1", "c3", "c2"], tol=1e-6, threads=t),
        lambda t: mdp.evaluate_table(model, table, "mp", tol=1e-6, threads=t),
    ):
        one, two = run(1), run(2)
        assert (one.lower, one.upper, one.iterations) == (two.lower, two.upper, two.iterations)
        np.testing.assert_array_equal(one.values, two.values)
        np.testing.assert_array_equal(one.actions, two.actions)


@settings(max_examples=15, deadline=None)
@given(
    p_back=st.floats(0.0, 0.6),
    caps=st.lists(st.integers(1, 5), min_size=3, max_size=3),
    seed=st.integers(0, 1000),
    loss=st.sampled_from([0.0, 3.5, 250.0]),
)
def test_random_routing_sweep_matches_numpy(
    p_back: float, caps: list[int], seed: int, loss: float
) -> None:
    """Random routing (back to an earlier class, to itself, out), any caps, with or without
    a cost per lost arrival: the compiled sweep is the numpy operator."""
    model = mdp.chain_model(routed(p_back), caps, loss)
    V = np.random.default_rng(seed).normal(size=model.n_states)
    ref_tv, ref_act = mdp.bellman_reference(model, V)
    tv = np.zeros_like(V)
    act = np.zeros((model.n_states, 2), dtype=np.int64)
    args = mdp.kernel_args(model, np.full(3, -1, dtype=np.int64), np.zeros((1, 2), dtype=np.int64))
    mdp._kernel()(V.copy(), tv, act, 1, *args)
    np.testing.assert_allclose(tv, ref_tv, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(act, ref_act)


@pytest.mark.parametrize("name", ["criss-cross", "lu-kumar"])
def test_stationary_cost_equals_value_iteration(name: str) -> None:
    """The stationary distribution of the optimal policy gives the same average cost as the
    value iteration's bounds, and it is a distribution."""
    sol = mdp.solve(resolve_network(name), 12, tol=1e-7)
    pi = mdp.stationary(sol)
    assert pi.min() >= -1e-15 and pi.sum() == pytest.approx(1.0)
    assert mdp.mean_cost(sol.model, pi) == pytest.approx(sol.cost, rel=1e-5)
    P = mdp.transition_matrix(sol)
    np.testing.assert_allclose(np.asarray(P.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    assert 0.0 < mdp.at_cap(sol.model, pi) < 1.0


def test_optimal_beats_every_priority_and_bounds_hold() -> None:
    """The optimal cost is below every static priority's; each bound interval is ordered
    and narrower than the tolerance."""
    model = mdp.chain_model(resolve_network("criss-cross"), 15)
    best = mdp.solve(model, tol=1e-5)
    assert best.converged and best.lower <= best.upper
    assert best.upper - best.lower <= 1e-5 * best.lower
    orders = mdp.priority_orders(model)
    assert sorted(map(tuple, orders)) == [("c1", "c3", "c2"), ("c3", "c1", "c2")]
    for order in orders:
        assert mdp.evaluate(model, order, tol=1e-5).lower >= best.lower


@pytest.mark.parametrize("name", ["max-pressure", "max-pressure:dai-lin", "max-weight"])
def test_table_sweep_matches_numpy_operator(name: str) -> None:
    """A policy's table (maximum pressure idles in Dai and Lin's form): the compiled sweep in
    table mode is the numpy operator with that table."""
    net = resolve_network("criss-cross")
    model = mdp.chain_model(net, 6)
    table = policy_table(net, model, name)
    V = np.random.default_rng(1).random(model.n_states)
    ref_tv, ref_act = mdp.bellman_reference(model, V, fixed=table)
    tv = np.zeros_like(V)
    act = np.zeros_like(table)
    mdp._kernel()(
        V.copy(), tv, act, 1, *mdp.kernel_args(model, np.full(3, -2, dtype=np.int64), table)
    )
    np.testing.assert_allclose(tv, ref_tv, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(act, ref_act)
    np.testing.assert_array_equal(act, table)


def test_policy_tables_agree_with_rank_evaluation() -> None:
    """c-mu and LBFS tabulated are the continuing priority: the same cost as the rank
    iteration, and the exact 3 jobs of the medium balanced criss-cross network."""
    net = resolve_network("criss-cross-bm")
    rank = mdp.evaluate(net, ["c1", "c3", "c2"], 30, tol=1e-7)
    for name in ("c-mu", "lbfs", "priority:c1>c3"):
        sol = evaluate_policy(net, name, 30, tol=1e-7)
        assert sol.cost == pytest.approx(rank.cost, rel=1e-9)
    assert rank.cost == pytest.approx(3.0, rel=1e-4)


class EveryEventMaxPressure(MaxPressure):
    """Maximum pressure re-decided at every event of the network (what its table means)."""

    every_event = True


@pytest.mark.parametrize("policy", ["max-pressure:dai-lin", "every-event"])
def test_simulator_lands_on_exact_policy_cost(policy: str) -> None:
    """Two ways to one number: maximum pressure (re-deciding at every event; in Dai and Lin's
    form it also idles) evaluated exactly on the truncated network, and simulated on the
    network itself for 100,000 s: the exact cost lies in the run's 95% interval."""
    net = resolve_network("criss-cross-bm")
    p = EveryEventMaxPressure() if policy == "every-event" else policy
    exact = evaluate_policy(net, p, 30, tol=1e-6)
    assert exact.converged
    run = NetworkSimulator(net, p, horizon=100_000.0, seed=3).run(keep_jobs=False).result()
    low, high = run.mean_jobs_ci
    assert low <= exact.cost <= high
    assert abs(run.mean_jobs / exact.cost - 1) < 0.03


def test_table_and_policy_refusals() -> None:
    net = resolve_network("criss-cross")
    model = mdp.chain_model(net, 4)
    for name in ("fcfs", "pr", "fluid"):
        with pytest.raises(SpecError, match="not a function of the job counts"):
            policy_table(net, model, name)
    table = policy_table(net, model, "max-pressure")
    bad = table.copy()
    bad[0, 0] = 0  # state 0 has no job of c1
    with pytest.raises(SpecError, match="serves class 0"):
        mdp.evaluate_table(model, bad, "bad")
    with pytest.raises(SpecError, match="shape"):
        mdp.evaluate_table(model, table[:-1], "short")


# ------------------------------------------------------------------ the simulator
def test_table_of_a_priority_replays_the_priority_exactly() -> None:
    """The table of a priority's evaluation, run in the simulator, is that priority: the
    same run, number for number."""
    net = resolve_network("criss-cross")
    table = TablePolicy(mdp.evaluate(net, ["c1", "c3", "c2"], 10, tol=1e-3))
    a = NetworkSimulator(net, table, horizon=3000.0, seed=4).run(keep_jobs=False).result()
    b = NetworkSimulator(net, "priority:c1>c3>c2", horizon=3000.0, seed=4).run(keep_jobs=False)
    assert a.mean_jobs == b.result().mean_jobs


def test_optimal_table_beats_best_priority_in_simulation() -> None:
    """On the criss-cross network (load 0.9), the optimal table run in the simulator has
    fewer jobs than the best static priority on the same arrivals (about 15 against 18.6)."""
    net = resolve_network("criss-cross")
    sol = mdp.solve(net, 25, tol=1e-4)
    table = NetworkSimulator(net, TablePolicy(sol), horizon=8000.0, seed=1).run(keep_jobs=False)
    prio = NetworkSimulator(net, "priority:c1>c3>c2", horizon=8000.0, seed=1).run(keep_jobs=False)
    assert table.result().mean_jobs < 0.9 * prio.result().mean_jobs


@pytest.mark.slow
def test_optimal_table_simulated_matches_the_solver() -> None:
    """The optimal policy at caps 60, run on the untruncated network for 3 x 50,000 s: its
    mean jobs fall within 4% of the solver's cost (the caps and the runs' noise)."""
    net = resolve_network("criss-cross")
    sol = mdp.solve(net, 60, tol=1e-4)
    runs = [
        NetworkSimulator(net, TablePolicy(sol), horizon=50_000.0, seed=s).run(keep_jobs=False)
        for s in range(3)
    ]
    mean = float(np.mean([r.result().mean_jobs for r in runs]))
    assert mean == pytest.approx(sol.cost, rel=0.04)


def test_saved_table_is_a_policy_name_that_replays_exactly(tmp_path) -> None:
    """The optimal table saved by the command runs as ``table:FILE`` in the simulator and
    gives the same run as the solution's own TablePolicy."""
    net = resolve_network("criss-cross")
    out = tmp_path / "opt"
    assert main(["optimal", "criss-cross", "--caps", "10", "--out", str(out), "--no-progress"]) == 0
    path = out / "optimal_table.npz"
    sol = mdp.solve(net, 10)
    direct = NetworkSimulator(net, TablePolicy(sol), horizon=2000.0, seed=5).run(keep_jobs=False)
    named = NetworkSimulator(net, f"table:{path}", horizon=2000.0, seed=5).run(keep_jobs=False)
    assert named.result().mean_jobs == direct.result().mean_jobs
    assert named.policy.name == f"table:{path}"


def test_bad_table_files(tmp_path, capsys) -> None:
    """A missing file, a file that is not a table and a table of another network: one-line
    errors naming the policy, exit code 2 from the command line."""
    junk = tmp_path / "junk.npz"
    junk.write_text("not a table")
    for path, words in ((tmp_path / "none.npz", "no such file"), (junk, "not an action table")):
        with pytest.raises(SpecError, match=words):
            NetworkSimulator(resolve_network("criss-cross"), f"table:{path}", horizon=10.0)
        code = main(["simulate", "criss-cross", "--policy", f"table:{path}", "--horizon", "10"])
        err = capsys.readouterr().err
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    ActionTable.of(mdp.solve(resolve_network("criss-cross"), 3, tol=1e-2)).save(tmp_path / "cc.npz")
    with pytest.raises(SpecError, match="was made for classes c1, c2, c3"):
        NetworkSimulator(resolve_network("lu-kumar"), f"table:{tmp_path / 'cc.npz'}", horizon=10.0)


def test_table_refuses_another_network() -> None:
    sol = mdp.solve(resolve_network("criss-cross"), 3, tol=1e-2)
    with pytest.raises(SpecError, match="policy"):
        NetworkSimulator(resolve_network("lu-kumar"), TablePolicy(sol), horizon=10.0)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("net", "caps", "field"),
    [
        ("rybko-stolyar", 5, "engines.e1"),
        ("criss-cross", [5, 5], "--caps"),
        ("criss-cross", [5, 0, 5], "--caps"),
        ("criss-cross", 1000, "--caps"),
    ],
)
def test_bad_network_or_caps(net: str, caps: object, field: str) -> None:
    with pytest.raises(SpecError) as err:
        mdp.chain_model(resolve_network(net), caps)  # type: ignore[arg-type]
    assert err.value.field == field


def test_bad_service_discipline_and_tolerance() -> None:
    det = single_station({"a": (0.5, {"kind": "deterministic", "mean": 1.0})})
    with pytest.raises(SpecError, match=r"classes\.a\.service"):
        mdp.chain_model(det, 5)
    nonpre = single_station({"a": (0.5, exp(1.0))}, discipline="non-preemptive")
    with pytest.raises(SpecError, match=r"engines\.s"):
        mdp.chain_model(nonpre, 5)
    two = single_station({"a": (0.5, exp(1.0))}, servers=2)
    with pytest.raises(SpecError, match=r"engines\.s"):
        mdp.chain_model(two, 5)
    for loss in (-1.0, math.nan, [1.0, 2.0, 3.0]):
        with pytest.raises(SpecError, match="--loss-cost"):
            mdp.chain_model(two_class(), 5, loss)  # type: ignore[arg-type]
    for threads in (0, mdp.max_threads() + 1, 1.5):
        with pytest.raises(SpecError, match="--threads"):
            mdp.solve(two_class(), 5, threads=threads)  # type: ignore[arg-type]
    for tol in (0.0, -1.0, math.nan):
        with pytest.raises(SpecError, match="--tol"):
            mdp.solve(two_class(), 5, tol=tol)
    with pytest.raises(SpecError, match="priority"):
        mdp.evaluate(two_class(), ["a", "nope"], 5)


# ------------------------------------------------------------------ the command
def test_command_writes_table_and_files(tmp_path, capsys) -> None:
    out = tmp_path / "opt"
    code = main(
        [
            "optimal",
            "criss-cross",
            "--caps",
            "12",
            "--priorities",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "optimal" in text and "priority:c1>c3>c2" in text and "at a cap" in text
    summary = json.loads((out / "optimal.json").read_text())
    costs = {r["policy"]: r["cost"] for r in summary["policies"]}
    assert set(costs) == {"optimal", "priority:c1>c3>c2", "priority:c3>c1>c2"}
    assert costs["optimal"] <= min(costs.values())
    for row in summary["policies"]:
        assert row["stationary_cost"] == pytest.approx(row["cost"], rel=1e-3)
        assert 0.0 < row["at_cap"] < 0.5
    assert (out / "optimal.csv").read_text().count("\n") == 4


def test_command_loss_cost(tmp_path, capsys) -> None:
    """``--loss-cost`` charges lost arrivals: recorded in the summary, the optimum costs more
    than without the charge and sits at a cap less, and the stationary cost agrees."""
    costs = {}
    for loss in ("0", "40"):
        out = tmp_path / loss
        argv = ["optimal", "criss-cross", "--caps", "5", "--loss-cost", loss, "--out", str(out)]
        assert main([*argv, "--no-progress"]) == 0
        summary = json.loads((out / "optimal.json").read_text())
        assert summary["loss_cost"] == [float(loss)] * 3
        row = summary["policies"][0]
        assert row["stationary_cost"] == pytest.approx(row["cost"], rel=1e-3)
        costs[loss] = (row["cost"], row["at_cap"])
    capsys.readouterr()
    assert costs["40"][0] > costs["0"][0] and costs["40"][1] < costs["0"][1]


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["optimal", "rybko-stolyar"], "engines.e1"),
        (["optimal", "criss-cross", "--caps", "x"], "--caps"),
        (["optimal", "criss-cross", "--caps", "3,3"], "--caps"),
        (["optimal", "criss-cross", "--tol", "0"], "--tol"),
        (["optimal", "criss-cross", "--loss-cost", "-5"], "--loss-cost"),
        (["optimal", "criss-cross", "--loss-cost", "1,2"], "--loss-cost"),
        (["optimal", "criss-cross", "--loss-cost", "nan"], "--loss-cost"),
        (["optimal", "criss-cross", "--threads", "0"], "--threads"),
        (["optimal", "criss-cross", "--threads", "999"], "--threads"),
        (["optimal", "criss-cross", "--policies", "fcfs"], "--policies"),
        (["optimal", "criss-cross", "--policies", "nope"], "--policies"),
        (["optimal", "no-such-network"], "network"),
    ],
)
def test_command_bad_input_exit_2(argv: list[str], field: str, capsys, tmp_path) -> None:
    code = main([*argv, "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert field in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_command_interrupted_keeps_what_it_computed(tmp_path, monkeypatch, capsys) -> None:
    """Ctrl-C during the priorities: the optimal row and its table are written, exit 130."""

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mdp, "evaluate", interrupt)
    out = tmp_path / "opt"
    code = main(["optimal", "criss-cross", "--caps", "8", "--priorities", "--out", str(out)])
    assert code == 130
    summary = json.loads((out / "optimal.json").read_text())
    assert summary["interrupted"] and [r["policy"] for r in summary["policies"]] == ["optimal"]
    assert (out / "optimal_table.npz").exists()
    assert "interrupted" in capsys.readouterr().err
