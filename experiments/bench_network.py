"""Benchmark: network simulator speed, against the single-engine simulator and against Ciw.

Three tables, every timing the best of ``--repeat`` runs, the runs compared in a row made
alternately (the machine may be shared: compare the ratios, not the absolute times):

1. **One engine, one class.** The default scenario at 0.9 lambda* (one engine hour, warm-up 0)
   per scheduler, simulated by the single-engine simulator (``policyopt.sim.simulate``) and by
   the network simulator on the scenario's one-engine network (``scenario_network``, FCFS;
   the compiled event loop, which it takes by default; set-up included in both, and only the
   result kept, as ``simulate`` and ``simulate_classes`` do). Both form the same kind of
   batches; ``per batch`` is the network simulator's wall time per batch over the single
   engine's (target: at most 1.3x).
2. **Criss-cross against Ciw.** The classic criss-cross network (``criss-cross``: stations
   ``s1``, ``s2``; ``c1`` at ``s1`` -> ``c2`` at ``s2`` -> exit, ``c3`` at ``s1`` -> exit;
   Poisson arrivals 0.9 and 0.9, exponential services of means 0.5, 1, 0.5: load 0.9 at both
   stations) under the preemptive-resume priority ``priority:exit`` (``c2``, ``c3`` before
   ``c1``), and the same model in Ciw (three customer classes, ``c1`` changing to ``c2`` after
   ``s1``, priority classes with ``resume`` preemption), for ``--ciw-horizon`` time units
   each. Events are exogenous arrivals plus service completions; the ratio is policyopt's
   events per wall second over Ciw's (target: at least 10x), for the compiled event loop a
   station network takes by default and for the Python loop (``loop="python"``, the
   reference). Ciw is the optional ``bench``
   extra (``pip install -e ".[bench]"``); without it the table says so and is skipped.
3. **Library networks.** Batches (or service completions) plus jobs started per wall second.

    python experiments/bench_network.py [--repeat 3] [--ciw-horizon 200000]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from policyopt.model import Scenario
from policyopt.model.network import scenario_network
from policyopt.model.networks_library import get_network
from policyopt.sim import simulate
from policyopt.sim.network_sim import NetworkSimulator
from policyopt.solvers.capacity import capacity

SCHEDULERS = ["fastertransformer", "vllm", "orca", "sarathi"]
CASES = [
    ("rybko-stolyar", "max-pressure"),
    ("rybko-stolyar", "priority:entry"),
    ("fork-join", "fcfs"),
    ("replicated-4", "fcfs"),
    ("criss-cross", "priority:exit"),
    ("criss-cross", "max-pressure"),
]


def one_engine(scheduler: str, repeat: int) -> tuple[float, int, float, int]:
    """Best wall seconds and batches of the single-engine and the network simulator."""
    base = Scenario()
    lam = capacity(base.engine, base.workload).lambda_star
    sc = Scenario(
        scheduler=scheduler,
        workload={"arrival": {"kind": "poisson", "rate": 0.9 * lam}},
        run={"horizon_s": 3600.0, "warmup_s": 0.0, "seed": 0},
    )
    net = scenario_network(sc)
    single = network = float("inf")
    single_batches = network_batches = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = simulate(sc)
        single = min(single, time.perf_counter() - t0)
        single_batches = res.batches
        t0 = time.perf_counter()  # set-up included, as in simulate()
        sim = NetworkSimulator(net, "fcfs", horizon=3600.0, warmup=0.0, seed=0)
        sim.run(keep_jobs=False)  # the result is all simulate() gives too
        network = min(network, time.perf_counter() - t0)
        network_batches = sim.engines[0].stats.batches
    return single, single_batches, network, network_batches


def ciw_criss_cross() -> Any:
    """The criss-cross network in Ciw (priority classes: 0 first; resume after preemption)."""
    import ciw

    exp = ciw.dists.Exponential
    names = ("c1", "c2", "c3")
    stay = {c: {d: float(c == d) for d in names} for c in names}
    return ciw.create_network(
        arrival_distributions={"c1": [exp(0.9), None], "c2": [None, None], "c3": [exp(0.9), None]},
        service_distributions={c: [exp(2.0), exp(1.0)] for c in names},  # means 0.5 and 1
        routing={  # routing follows the class after its change: c2 leaves s1 for s2
            "c1": [[0.0, 0.0], [0.0, 0.0]],
            "c2": [[0.0, 1.0], [0.0, 0.0]],
            "c3": [[0.0, 0.0], [0.0, 0.0]],
        },
        class_change_matrices=[{**stay, "c1": {"c1": 0.0, "c2": 1.0, "c3": 0.0}}, stay],
        number_of_servers=[1, 1],
        priority_classes=({"c1": 1, "c2": 0, "c3": 0}, ["resume", "resume"]),
    )


def run_ciw(horizon: float, seed: int) -> tuple[float, int]:
    """Wall seconds and events (arrivals + service completions) of one Ciw run."""
    import ciw

    ciw.seed(seed)
    sim = ciw.Simulation(ciw_criss_cross())
    t0 = time.perf_counter()
    sim.simulate_until_max_time(horizon)
    wall = time.perf_counter() - t0
    arrivals = sim.nodes[0].number_of_individuals
    completions = len(sim.get_all_records(only=["service"]))
    return wall, arrivals + completions


def run_policyopt(horizon: float, seed: int, loop: str) -> tuple[float, int]:
    """Wall seconds and events (arrivals + service completions) of one policyopt run in its
    compiled or Python event loop (``loop``)."""
    sim = NetworkSimulator(
        get_network("criss-cross"), "priority:exit", horizon=horizon, seed=seed, loop=loop
    )
    t0 = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - t0
    arrivals = sim.next_id - sim.jobs_created  # ids go to jobs and arrivals (no forks here)
    completions = sum(e.stats.batches for e in sim.engines)  # a station's "batch": one job
    return wall, arrivals + completions


def network_rate(name: str, policy: str, horizon: float, repeat: int) -> tuple[float, float]:
    best = float("inf")
    work = 0.0
    for _ in range(repeat):
        sim = NetworkSimulator(get_network(name), policy, horizon=horizon)
        t0 = time.perf_counter()
        sim.run()
        best = min(best, time.perf_counter() - t0)
        work = sum(e.stats.batches for e in sim.engines) + sim.jobs_created
    return work / best, best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--horizon", type=float, default=1800.0, help="seconds, library networks")
    ap.add_argument("--ciw-horizon", type=float, default=200000.0, help="criss-cross vs Ciw")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (the best is kept)")
    args = ap.parse_args(argv)

    print("1. one engine, one class, 0.9 lambda*, one hour: network vs single-engine simulator")
    print(
        f"{'scheduler':<18} {'single s':>8} {'batches':>7} {'network s':>9} {'batches':>7} "
        f"{'us/batch':>8} {'us/batch':>8} {'per batch':>9}"
    )
    for s in SCHEDULERS:
        ws, bs, wn, bn = one_engine(s, args.repeat)
        us_s, us_n = 1e6 * ws / bs, 1e6 * wn / bn
        print(
            f"{s:<18} {ws:>8.3f} {bs:>7d} {wn:>9.3f} {bn:>7d} {us_s:>8.2f} {us_n:>8.2f} "
            f"{us_n / us_s:>8.2f}x"
        )

    print()
    print(f"2. criss-cross, priority:exit, {args.ciw_horizon:,.0f} time units: policyopt vs Ciw")
    try:
        import ciw
    except ImportError:
        ciw = None
    if ciw is None:
        print('   Ciw is not installed: skipped (pip install -e ".[bench]" to compare)')
    else:
        run_policyopt(1000.0, 0, "compiled")  # the kernel loaded (or compiled) once, untimed
        best = {"compiled": float("inf"), "python": float("inf"), "ciw": float("inf")}
        events = dict.fromkeys(best, 0)
        for _ in range(args.repeat):  # alternate, so all see the same (shared) machine
            for loop in ("compiled", "python"):
                wall, events[loop] = run_policyopt(args.ciw_horizon, 0, loop)
                best[loop] = min(best[loop], wall)
            wall, events["ciw"] = run_ciw(args.ciw_horizon, 0)
            best["ciw"] = min(best["ciw"], wall)
        rate_c = events["ciw"] / best["ciw"]
        print(f"{'simulator':<22} {'wall s':>8} {'events':>9} {'events/s':>10} {'ratio':>7}")
        labels = {
            "compiled": "policyopt (compiled)",
            "python": "policyopt (python)",
            "ciw": f"ciw {ciw.__version__}",
        }
        for key, label in labels.items():
            rate = events[key] / best[key]
            print(
                f"{label:<22} {best[key]:>8.2f} {events[key]:>9,d} {rate:>10,.0f} "
                f"{rate / rate_c:>6.1f}x"
            )

    print()
    print("3. library networks: batches (station: completions) + jobs started per wall second")
    print(f"{'network':<16} {'policy':<16} {'wall s':>7} {'batches+jobs/s':>15}")
    for name, policy in CASES:
        horizon = args.horizon if name != "criss-cross" else 20 * args.horizon
        rate, wall = network_rate(name, policy, horizon, args.repeat)
        print(f"{name:<16} {policy:<16} {wall:>7.2f} {rate:>15,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
