"""Benchmark: network simulator speed against the single-engine simulator.

Prints, per library network and policy, simulated batches and jobs (class visits) per wall
second, next to the single-engine simulator's batches and requests per wall second on one
default engine at 0.9 lambda* (Sarathi). Both count the same kinds of work: batches formed
plus jobs started. Best of ``--repeat`` runs; compare ratios within one run.

    python experiments/bench_network.py
"""

from __future__ import annotations

import argparse
import time

from policyopt.model import Scenario
from policyopt.model.networks_library import get_network
from policyopt.sim import simulate
from policyopt.sim.network_sim import NetworkSimulator
from policyopt.solvers.capacity import capacity

CASES = [
    ("rybko-stolyar", "max-pressure"),
    ("rybko-stolyar", "priority:entry"),
    ("fork-join", "fcfs"),
    ("replicated-4", "fcfs"),
]


def single_engine_rate(horizon: float, repeat: int) -> float:
    base = Scenario()
    lam = capacity(base.engine, base.workload).lambda_star
    sc = Scenario(
        workload={"arrival": {"kind": "poisson", "rate": 0.9 * lam}}, run={"horizon_s": horizon}
    )
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = simulate(sc)
        best = min(best, time.perf_counter() - t0)
    batches = res.batches / (1 - res.warmup / res.horizon)
    return (batches + res.arrived) / best


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
    ap.add_argument("--horizon", type=float, default=1800.0, help="simulated seconds per run")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    single = single_engine_rate(3600.0, args.repeat)
    print(f"single engine (sarathi, 0.9 lambda*): {single:,.0f} batches+requests per wall s")
    print(f"{'network':<16} {'policy':<16} {'wall s':>7} {'batches+jobs/s':>15} {'vs single':>10}")
    for name, policy in CASES:
        rate, wall = network_rate(name, policy, args.horizon, args.repeat)
        print(f"{name:<16} {policy:<16} {wall:>7.2f} {rate:>15,.0f} {single / rate:>9.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
