"""Benchmark: simulator speed per scheduler, without and with a slot limit, and peak memory.

Prints, per scheduler at ``--load`` x lambda* on the default engine (staircase, b = 512,
workload 129/112 tokens lognormal), the wall time of ``--hours`` of engine time, simulated
batches and requests per wall second, then the wall time of the same run with ``max_seqs``
set (``--max-seqs``, at ``--load`` x that engine's own lambda*, which the slot limit lowers)
and the ratio of the two; ``--kv-cache`` adds the same runs with a limited KV cache (the
GPU's, ``kv_cache: {gpu: {}}``: 49,984 tokens), which run on the network simulator, next to
that simulator without a cache, with the ratios to the plain run and per batch; ``--memory``
adds the peak resident memory of a 1,000,000-request run in a fresh process. Wall times are
the best of ``--repeat`` runs, the runs of every scheduler and variant taking turns (this
machine is shared: compare ratios within one run, not absolute numbers across runs).

    python experiments/bench_engine.py
    python experiments/bench_engine.py --max-seqs 100 --repeat 5
    python experiments/bench_engine.py --kv-cache
    python experiments/bench_engine.py --memory --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from policyopt.model import Scenario
from policyopt.report import format_table
from policyopt.sim import simulate
from policyopt.sim.run import simulate_classes
from policyopt.solvers.capacity import capacity

SCHEDULERS = ["fastertransformer", "vllm", "orca", "sarathi"]


def scenario(
    scheduler: str,
    load: float,
    horizon: float,
    seed: int,
    max_seqs: int | None = None,
    kv_cache: dict[str, object] | None = None,
) -> Scenario:
    """The default scenario with ``scheduler`` at ``load`` x lambda* of its engine (the
    default engine, with ``max_seqs`` and ``kv_cache`` if given; the cache does not change
    lambda*)."""
    engine: dict[str, object] = {"max_seqs": max_seqs} if max_seqs is not None else {}
    if kv_cache is not None:
        engine["kv_cache"] = kv_cache
    base = Scenario(engine=engine)
    lam = capacity(base.engine, base.workload).lambda_star
    return Scenario(
        scheduler=scheduler,
        engine=engine,
        workload={"arrival": {"kind": "poisson", "rate": load * lam}},
        run={"horizon_s": horizon, "seed": seed},
    )


def time_all(
    schedulers: list[str], load: float, horizon: float, repeat: int, max_seqs: int | None
) -> list[dict[str, object]]:
    """Best wall time of ``repeat`` runs per scheduler, without and with ``max_seqs``; the
    runs take turns so that both see the same machine."""
    variants = [None] if max_seqs is None else [None, max_seqs]
    cases = {(s, k): scenario(s, load, horizon, 0, k) for s in schedulers for k in variants}
    best = dict.fromkeys(cases, float("inf"))
    results = {}
    for _ in range(repeat):
        for key, sc in cases.items():
            t0 = time.perf_counter()
            results[key] = simulate(sc)
            best[key] = min(best[key], time.perf_counter() - t0)
    rows: list[dict[str, object]] = []
    for s in schedulers:
        res = results[(s, None)]
        wall = best[(s, None)]
        batches = res.batches / (1 - res.warmup / res.horizon)  # batches over the whole run
        row: dict[str, object] = {
            "scheduler": s,
            "load": load,
            "engine_hours": horizon / 3600,
            "requests": res.arrived,
            "wall_s": wall,
            "batches_per_s": batches / wall,
            "requests_per_s": res.arrived / wall,
            "verdict": res.verdict,
        }
        if max_seqs is not None:
            limited = results[(s, max_seqs)]
            row |= {
                "max_seqs": max_seqs,
                "requests_max_seqs": limited.arrived,
                "wall_s_max_seqs": best[(s, max_seqs)],
                "ratio": best[(s, max_seqs)] / wall,
                "verdict_max_seqs": limited.verdict,
            }
        rows.append(row)
    return rows


def time_cache(
    schedulers: list[str], load: float, horizon: float, repeat: int
) -> list[dict[str, object]]:
    """Best wall time of ``repeat`` runs per scheduler on the single-engine simulator, on the
    network simulator (the same scenario as a one-engine network) and there with the GPU's KV
    cache; the runs take turns. Batches are counted over the whole run."""
    cases: dict[tuple[str, str], Scenario] = {}
    for s in schedulers:
        cases[(s, "single")] = cases[(s, "network")] = scenario(s, load, horizon, 0)
        cases[(s, "cache")] = scenario(s, load, horizon, 0, kv_cache={"gpu": {}})
    best = dict.fromkeys(cases, float("inf"))
    batches: dict[tuple[str, str], float] = {}
    verdicts: dict[tuple[str, str], object] = {}
    for _ in range(repeat):
        for key, sc in cases.items():
            t0 = time.perf_counter()
            if key[1] == "single":
                res = simulate(sc)
                n, verdict = res.batches / (1 - res.warmup / res.horizon), res.verdict
            else:
                net = simulate_classes(sc)
                e = net.engines["engine"]
                n = float(e["batches"]) / (1 - net.warmup / net.horizon)
                verdict = (net.verdict, e.get("preemptions"))
            best[key] = min(best[key], time.perf_counter() - t0)
            batches[key], verdicts[key] = n, verdict
    rows: list[dict[str, object]] = []
    for s in schedulers:
        one, net, mem = best[(s, "single")], best[(s, "network")], best[(s, "cache")]
        per = {k: best[(s, k)] / batches[(s, k)] for k in ("single", "network", "cache")}
        verdict, preemptions = verdicts[(s, "cache")]  # type: ignore[misc]
        rows.append(
            {
                "scheduler": s,
                "wall_s": one,
                "wall_s_network": net,
                "wall_s_cache": mem,
                "ratio_cache": mem / one,
                "ratio_cache_network": mem / net,
                "ratio_cache_per_batch": per["cache"] / per["single"],
                "verdict_cache": verdict,
                "preemptions": preemptions,
            }
        )
    return rows


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
    ap.add_argument(
        "--max-seqs", type=int, default=24, help="slot limit of the second run (0: no second run)"
    )
    ap.add_argument("--memory", action="store_true", help="also measure a 1,000,000-request run")
    ap.add_argument(
        "--kv-cache", action="store_true", help="also time the runs with the GPU's KV cache"
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)

    max_seqs = args.max_seqs if args.max_seqs > 0 else None
    rows = time_all(SCHEDULERS, args.load, 3600 * args.hours, args.repeat, max_seqs)
    mem = peak_memory(1_000_000, args.load) if args.memory else None
    cache = (
        time_cache(SCHEDULERS, args.load, 3600 * args.hours, args.repeat) if args.kv_cache else None
    )
    if args.json:
        print(json.dumps({"runs": rows, "memory": mem, "kv_cache": cache}, indent=2))
        return 0
    print(f"{args.hours:g} engine hour(s) at {args.load:g} lambda*, best of {args.repeat}")
    head = (
        f"{'scheduler':<18} {'requests':>9} {'wall s':>8} {'batches/s':>10} "
        f"{'requests/s':>11}  {'verdict':<12}"
    )
    if max_seqs is not None:
        head += f" {'max_seqs ' + str(max_seqs) + ' wall s':>20} {'ratio':>6}"
    print(head)
    for r in rows:
        line = (
            f"{r['scheduler']:<18} {r['requests']:>9} {r['wall_s']:>8.3f} "
            f"{r['batches_per_s']:>10.0f} {r['requests_per_s']:>11.0f}  {r['verdict']:<12}"
        )
        if max_seqs is not None:
            line += f" {r['wall_s_max_seqs']:>20.3f} {r['ratio']:>6.2f}"
        print(line)
    if cache:
        print(
            f"\nwith the GPU's KV cache (network simulator), best of {args.repeat}; ratios to "
            "the plain run, and per batch"
        )
        print(
            format_table(
                [
                    "scheduler",
                    "plain s",
                    "network s",
                    "cache s",
                    "x plain",
                    "x network",
                    "x plain/batch",
                    "verdict",
                    "preemptions",
                ],
                [
                    [
                        str(r["scheduler"]),
                        f"{r['wall_s']:.3f}",
                        f"{r['wall_s_network']:.3f}",
                        f"{r['wall_s_cache']:.3f}",
                        f"{r['ratio_cache']:.2f}",
                        f"{r['ratio_cache_network']:.2f}",
                        f"{r['ratio_cache_per_batch']:.2f}",
                        str(r["verdict_cache"]),
                        f"{r['preemptions']:,}",
                    ]
                    for r in cache
                ],
            )
        )
    if mem:
        print(
            f"\n1,000,000 requests (sarathi): {mem['wall_s']:.2f} s wall, "
            f"peak RSS {mem['peak_rss_mb']:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
