"""Benchmark: time of the capacity (static planning) LP and the fluid LP on random networks.

For random agent networks of 10, 100 and 1,000 classes (``--sizes``) it prints, per size:
the time to build and validate the spec, to solve the traffic equations, the first LP solve
(including CVXPY's compilation of the parametrized problem), and re-solves with new arrival
rates (the compiled problem is reused: only the ``Parameter`` values change). Re-solve times
are the median and 90th percentile of ``--repeat`` solves, each with freshly drawn workflow
rates; ``in HiGHS`` is the part spent inside the solver. The target is a re-solve of the
1,000-class LP under 50 ms. ``--fluid`` adds the fluid LP (``--periods`` periods of one
second) from random states, for sizes up to ``--fluid-max-classes`` (default 100).

A random network: ``K // 10`` LLM engines (token budgets 256..2048, the default staircase batch
time, Sarathi); ``K / 5`` workflows, each a chain of five classes in which every class may
(with probability 0.3) route back to the previous class or leave; every class is eligible at
one to three engines (join-shortest-queue) and has constant prompt/output lengths. Rates are
scaled so that ``theta*`` is near 1.25.

    python experiments/bench_lp.py
    python experiments/bench_lp.py --sizes 10 100 1000 --repeat 30 --fluid --json
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from policyopt.model import NetworkSpec, build
from policyopt.solvers.fluid_lp import FluidLP
from policyopt.solvers.static_planning import StaticPlanningLP
from policyopt.solvers.traffic import class_rates, traffic


def random_network(n_classes: int, seed: int) -> NetworkSpec:
    """A random agent network with ``n_classes`` classes (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_eng = max(2, n_classes // 10)
    engines = {
        f"e{j}": {"kind": "llm", "token_budget": int(rng.choice([256, 512, 1024, 2048]))}
        for j in range(n_eng)
    }
    classes: dict[str, Any] = {}
    workflows: list[dict[str, Any]] = []
    chain_len = 5 if n_classes >= 5 else n_classes
    for w in range(int(np.ceil(n_classes / chain_len))):
        names = [f"w{w}c{i}" for i in range(chain_len) if w * chain_len + i < n_classes]
        after: dict[str, Any] = {}
        for i, name in enumerate(names):
            elig = rng.choice(n_eng, size=int(rng.integers(1, min(3, n_eng) + 1)), replace=False)
            spec: dict[str, Any] = {
                "prompt": {"kind": "constant", "value": int(rng.integers(32, 512))},
                "output": {"kind": "constant", "value": int(rng.integers(16, 256))},
            }
            if len(elig) == 1:
                spec["engine"] = f"e{elig[0]}"
            else:
                spec["engines"] = [f"e{j}" for j in sorted(elig)]
            classes[name] = spec
            nxt = names[i + 1] if i + 1 < len(names) else "exit"
            if i > 0 and rng.random() < 0.3:
                back = float(rng.uniform(0.05, 0.3))
                after[name] = {"random": {names[i - 1]: back, nxt: 1.0 - back}}
            else:
                after[name] = nxt
        workflows.append(
            {
                "name": f"w{w}",
                "arrival": {"kind": "poisson", "rate": float(rng.uniform(0.1, 1.0))},
                "entry": names[0],
                "after": after,
            }
        )
    net = build(NetworkSpec, {"engines": engines, "classes": classes, "workflows": workflows})
    theta = StaticPlanningLP.from_network(net).solve().theta
    return net.scaled(theta / 1.25)


def bench_size(
    n_classes: int, repeat: int, seed: int, fluid: bool, periods: int, fluid_max: int
) -> dict:
    rng = np.random.default_rng(seed + 1)
    t0 = time.perf_counter()
    net = random_network(n_classes, seed)
    t_spec = time.perf_counter() - t0  # includes one LP solve to set the rates
    t0 = time.perf_counter()
    tr = traffic(net)
    t_traffic = time.perf_counter() - t0
    topo = net.topology

    t0 = time.perf_counter()
    lp = StaticPlanningLP.from_network(net, traffic=tr)
    plan = lp.solve()
    t_first = time.perf_counter() - t0

    alpha0 = np.asarray(topo.alpha)
    entries = np.flatnonzero(alpha0 > 0)
    lp_times, solver_times, e2e_times = [], [], []
    for _ in range(repeat):
        alpha = alpha0.copy()
        alpha[entries] *= rng.uniform(0.5, 1.5, len(entries))
        t0 = time.perf_counter()
        rates = class_rates(topo, alpha)
        t1 = time.perf_counter()
        lp.solve(rates=rates)
        t2 = time.perf_counter()
        lp_times.append(t2 - t1)
        e2e_times.append(t2 - t0)
        solver_times.append(float(lp.problem.solver_stats.solve_time or 0.0))
    row = {
        "classes": n_classes,
        "engines": topo.n_engines,
        "pairs": sum(len(e) for e in topo.eligible),
        "theta": plan.theta,
        "spec_ms": 1000 * t_spec,
        "traffic_ms": 1000 * t_traffic,
        "first_solve_ms": 1000 * t_first,
        "resolve_median_ms": 1000 * float(np.median(lp_times)),
        "resolve_p90_ms": 1000 * float(np.percentile(lp_times, 90)),
        "solver_median_ms": 1000 * float(np.median(solver_times)),
        "rates_plus_resolve_median_ms": 1000 * float(np.median(e2e_times)),
    }
    if fluid and n_classes <= fluid_max:
        t0 = time.perf_counter()
        flp = FluidLP(net, horizon=float(periods), step=1.0, traffic_=tr)
        flp.solve(np.zeros(topo.n_classes))
        row["fluid_first_ms"] = 1000 * (time.perf_counter() - t0)
        ftimes = []
        for _ in range(max(3, repeat // 5)):
            q0 = rng.uniform(0, 5, topo.n_classes)
            t0 = time.perf_counter()
            flp.solve(q0)
            ftimes.append(time.perf_counter() - t0)
        row["fluid_resolve_median_ms"] = 1000 * float(np.median(ftimes))
        row["fluid_method"] = flp.method
    elif fluid:
        row["fluid_first_ms"] = row["fluid_resolve_median_ms"] = float("nan")
        row["fluid_method"] = "-"
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=30, help="re-solves per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fluid", action="store_true", help="also time the fluid LP")
    parser.add_argument("--periods", type=int, default=20, help="fluid LP periods")
    parser.add_argument(
        "--fluid-max-classes", type=int, default=100, help="skip the fluid LP above this size"
    )
    parser.add_argument("--json", action="store_true", help="print JSON rows instead")
    args = parser.parse_args(argv)
    rows = [
        bench_size(n, args.repeat, args.seed, args.fluid, args.periods, args.fluid_max_classes)
        for n in args.sizes
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    cols = [
        ("classes", "classes", "{:>8d}"),
        ("engines", "engines", "{:>8d}"),
        ("pairs", "pairs", "{:>7d}"),
        ("traffic_ms", "traffic ms", "{:>11.1f}"),
        ("first_solve_ms", "first solve ms", "{:>15.1f}"),
        ("resolve_median_ms", "re-solve ms", "{:>12.1f}"),
        ("resolve_p90_ms", "p90 ms", "{:>8.1f}"),
        ("solver_median_ms", "in HiGHS ms", "{:>12.1f}"),
        ("rates_plus_resolve_median_ms", "rates+re-solve ms", "{:>18.1f}"),
    ]
    if args.fluid:
        cols += [
            ("fluid_first_ms", f"fluid({args.periods}) first ms", "{:>20.1f}"),
            ("fluid_resolve_median_ms", "fluid re-solve ms", "{:>18.1f}"),
        ]
    print(
        "".join(
            f"{title:>{len(fmt.format(0)) if 'd' in fmt else len(fmt.format(0.0))}}"
            for _, title, fmt in cols
        )
    )
    for row in rows:
        print("".join(fmt.format(row[key]) for key, _, fmt in cols))
    target = [r for r in rows if r["classes"] == 1000]
    if target:
        ok = target[0]["resolve_median_ms"] < 50
        print(
            f"\n1,000-class re-solve: median {target[0]['resolve_median_ms']:.1f} ms "
            f"({'meets' if ok else 'misses'} the 50 ms target); theta* = "
            f"{target[0]['theta']:.3f}"
        )


if __name__ == "__main__":
    main()
