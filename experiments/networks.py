"""Network experiments: Rybko-Stolyar, fork-join and replicated engines (``docs/networks.md``).

* Rybko-Stolyar agent network at nominal load 0.9 per engine: exit priority, the reversed
  (entry) priority, maximum pressure, fluid tracking and FCFS on the same arrivals.
* Fork-join under work-conserving FCFS at 0.9 and 1.1 of the static-planning LP boundary.
* Four replicated engines behind join-shortest-queue at 0.9 of the LP boundary (four times one
  engine's lambda*).

Writes ``experiments/results/networks.csv``, ``networks.md`` and ``networks_jobs.png`` (jobs in
system over time per run) and prints the table.

    python experiments/networks.py                # 7,200 s per run, about a minute
    python experiments/networks.py --horizon 28800 --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from policyopt.model.networks_library import get_network
from policyopt.sim.network_sim import NetworkResult, simulate_network
from policyopt.solvers.static_planning import static_plan
from policyopt.sweep import RunsInterrupted, run_all

OUT = Path(__file__).parent / "results"


def runs() -> list[tuple[str, str, float]]:
    """(network, policy, fraction of the LP boundary theta*)."""
    rs = [
        ("rybko-stolyar", p, 0.9)
        for p in ("priority:exit", "priority:entry", "max-pressure", "fluid", "fcfs")
    ]
    return [
        *rs,
        ("fork-join", "fcfs", 0.9),
        ("fork-join", "fcfs", 1.1),
        ("replicated-4", "fcfs", 0.9),
    ]


def simulate_run(run: tuple[str, str, float, float, int]) -> NetworkResult:
    """One run: (network, policy, fraction of theta*, horizon s, seed) -> its result."""
    name, policy, fraction, horizon, seed = run
    base = get_network(name)
    # the library networks sit at nominal load 0.9 of their bottleneck: theta* = 1 / 0.9
    net = base.scaled(fraction * static_plan(base).theta)
    return simulate_network(net, policy, horizon=horizon, seed=seed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--horizon", type=float, default=7200.0, help="simulated seconds per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="parallel processes (same numbers)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, object]] = []
    series = []
    t0 = time.perf_counter()
    plan = [(name, p, x, args.horizon, args.seed) for name, p, x in runs()]
    try:
        outcome = run_all(
            plan,
            simulate_run,
            jobs=args.jobs,
            desc="network runs",
            label=lambda run: f"{run[0]} {run[1]}",
        )
    except RunsInterrupted:
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    for i, error in outcome.errors.items():
        print(f"failed: {plan[i][:3]}: {error}", file=sys.stderr)
    if outcome.errors:
        return 1
    for (name, policy, fraction, _, _), res in zip(plan, outcome.results.values(), strict=True):
        flow = next(iter(res.workflows.values()))
        rows.append(
            {
                "network": name,
                "policy": policy,
                "x_boundary": fraction,
                "max_nominal_load": round(
                    max(float(e["nominal_load"]) for e in res.engines.values()), 3
                ),
                "mean_jobs": round(res.mean_jobs, 1),
                "jobs_drift_per_s": round(res.jobs_drift, 3),
                "jobs_drift_low": round(res.jobs_drift_ci[0], 3),
                "jobs_drift_high": round(res.jobs_drift_ci[1], 3),
                "throughput_vs_rate": round(flow["throughput"] / flow["rate"], 3),
                "latency_mean_s": round(flow["latency_mean"], 2),
                "verdict": res.verdict,
            }
        )
        series.append((f"{name} {policy} x{fraction}", res.series["t"], res.series["jobs"]))
    wall = time.perf_counter() - t0

    with (args.out / "networks.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    head = list(rows[0])
    lines = [
        "# Network experiments",
        "",
        f"- made by `python experiments/networks.py --horizon {args.horizon:g} "
        f"--seed {args.seed}` ({wall:.0f} s wall time)",
        "- `x_boundary`: arrival rates as a fraction of the static-planning LP boundary theta*",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    (args.out / "networks.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, t, jobs in series:
        ax = axes[0] if label.startswith("rybko") else axes[1]
        ax.plot(t, jobs, label=label.split(" ", 1)[1] if label.startswith("rybko") else label)
    axes[0].set_title("Rybko-Stolyar agent network, load 0.9 per engine")
    axes[1].set_title("fork-join and replicated engines")
    for ax in axes:
        ax.set_xlabel("time (s)")
        ax.set_ylabel("jobs in system")
        ax.set_yscale("symlog", linthresh=100)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "networks_jobs.png", dpi=120)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
