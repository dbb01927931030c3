"""Benchmark: simulator speed per scheduler, and peak memory of a long run.

Prints, per scheduler at ``--load`` x lambda* on the default engine (staircase, b = 512,
workload 129/112 tokens lognormal), the wall time of ``--hours`` of engine time, simulated
batches and requests per wall second, and (``--memory``) the peak resident memory of a
1,000,000-request run in a fresh process. Wall times are the best of ``--repeat`` runs (this
machine is shared: compare ratios within one run, not absolute numbers across runs).

    python experiments/bench_engine.py
    python experiments/bench_engine.py --memory --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from policyopt.model import Scenario
from policyopt.sim import simulate
from policyopt.solvers.capacity import capacity

SCHEDULERS = ["fastertransformer", "vllm", "orca", "sarathi"]


def scenario(scheduler: str, load: float, horizon: float, seed: int) -> Scenario:
    base = Scenario()
    lam = capacity(base.engine, base.workload).lambda_star
    return Scenario(
        scheduler=scheduler,
        workload={"arrival": {"kind": "poisson", "rate": load * lam}},
        run={"horizon_s": horizon, "seed": seed},
    )


def time_one(scheduler: str, load: float, horizon: float, repeat: int) -> dict[str, float]:
    sc = scenario(scheduler, load, horizon, seed=0)
    best = float("inf")
    res = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = simulate(sc)
        best = min(best, time.perf_counter() - t0)
    assert res is not None
    batches = res.batches / (1 - res.warmup / res.horizon)  # batches over the whole run
    return {
        "scheduler": scheduler,
        "load": load,
        "engine_hours": horizon / 3600,
        "requests": res.arrived,
        "wall_s": best,
        "batches_per_s": batches / best,
        "requests_per_s": res.arrived / best,
        "verdict": res.verdict,
    }


def peak_memory(requests: int, load: float) -> dict[str, float]:
    """Peak RSS (MB) of a fresh process simulating ``requests`` requests with sarathi."""
    code = (
        "import resource, sys, time\n"
        "sys.path.insert(0, '.')\n"
        "from experiments.bench_engine import scenario\n"
        "from policyopt.sim import simulate\n"
        f"sc = scenario('sarathi', {load}, {requests} / ({load} * 13.87), 0)\n"
        "t0 = time.perf_counter(); r = simulate(sc); wall = time.perf_counter() - t0\n"
        "print(r.arrived, wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return {"requests": int(out[0]), "wall_s": float(out[1]), "peak_rss_mb": float(out[2])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--load", type=float, default=0.9, help="load as a multiple of lambda*")
    ap.add_argument("--hours", type=float, default=1.0, help="engine hours per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per scheduler (best is kept)")
    ap.add_argument("--memory", action="store_true", help="also measure a 1,000,000-request run")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)

    rows = [time_one(s, args.load, 3600 * args.hours, args.repeat) for s in SCHEDULERS]
    mem = peak_memory(1_000_000, args.load) if args.memory else None
    if args.json:
        print(json.dumps({"runs": rows, "memory": mem}, indent=2))
        return 0
    print(f"{args.hours:g} engine hour(s) at {args.load:g} lambda*, best of {args.repeat}")
    print(
        f"{'scheduler':<18} {'requests':>9} {'wall s':>8} {'batches/s':>10} "
        f"{'requests/s':>11}  verdict"
    )
    for r in rows:
        print(
            f"{r['scheduler']:<18} {r['requests']:>9} {r['wall_s']:>8.3f} "
            f"{r['batches_per_s']:>10.0f} {r['requests_per_s']:>11.0f}  {r['verdict']}"
        )
    if mem:
        print(
            f"\n1,000,000 requests (sarathi): {mem['wall_s']:.2f} s wall, "
            f"peak RSS {mem['peak_rss_mb']:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
