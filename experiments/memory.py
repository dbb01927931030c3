"""A memory-bound workload: schedulers and preemption modes under a limited KV cache, and a
sweep of the cache size showing where the binding constraint switches from tokens to memory.

The engine is the paper's (CodeLlama-34B on an A100, token budget 512, the staircase batch
time: ``mu`` about 3,340 tokens/s) with the KV cache the GPU leaves (``kv_cache: {gpu: {}}``:
49,984 tokens in blocks of 16). Requests have the paper's prompts (129 tokens on average) and
long outputs (lognormal, mean 600 tokens), so ``lambda* = mu / (m_p + m_d)`` is about 4.6
requests/s while a request holds several hundred KV tokens for a minute and more: memory, not
the token budget, limits the load.

* **Policies** (rates 0.8 to 1.6 requests/s): vanilla vLLM (prefill first, recompute on
  preemption), Orca, Sarathi-Serve with recompute and with swap (1 microsecond per token
  each way); every one admits a prompt only when its blocks are free (the engine's admission
  control, ``fcfs``) and preempts the most recently admitted request when a decode cannot
  grow. Then Sarathi-Serve under the memory-aware admission rules: MC-SF (shortest output
  first with a projected-peak check; exact output lengths, and predicted with a 30% error),
  WAIT (per-type thresholds from the fluid model; exact lengths) and Nested WAIT (no output
  lengths: requests still running at a segment's end wait there for a group; thresholds from
  the fluid model).
  Throughput, p50/p99 latency, TTFT, preemptions and recomputed tokens.
* **Cache sweep** (Sarathi at 3.0 requests/s, 0.65 ``lambda*``): the cache from 25,000 to
  400,000 tokens; stable once the cache holds what the load needs (Little's law: the rate times
  the KV-token-seconds a request holds), unstable below.

Writes ``experiments/results/memory.csv``/``.json`` (one row per run), ``memory.md`` and
``memory.png`` (throughput and preemptions by rate; throughput by cache size).

Usage::

    python experiments/memory.py                 # the recorded setting (a few minutes)
    python experiments/memory.py --horizon 300   # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyopt.jsonout import write_json
from policyopt.model import Scenario, build
from policyopt.report import fmt, format_markdown, format_table, write_csv
from policyopt.sim.run import simulate_classes
from policyopt.sweep import run_all

HERE = Path(__file__).resolve().parent
HORIZON_S = 3600.0
RATES = (2.0, 2.5, 3.0, 3.5)
"""Arrival rates of the policy comparison (requests/s)."""
SWEEP_RATE = 3.0
"""Arrival rate of the cache sweep (requests/s)."""
CACHES = (25_000, 50_000, 75_000, 100_000, 150_000, 400_000)
"""Cache sizes of the sweep (tokens)."""
POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "vllm recompute": ("vllm", {}),
    "orca recompute": ("orca", {}),
    "sarathi recompute": ("sarathi", {}),
    "sarathi swap": ("sarathi", {"preemption": "swap", "swap_s_per_token": 1e-6}),
    "sarathi mc-sf": ("sarathi", {"admission": "mc-sf", "output_lengths": "exact"}),
    "sarathi mc-sf 30%": (
        "sarathi",
        {"admission": "mc-sf", "output_lengths": {"kind": "predicted", "rel_error": 0.3}},
    ),
    "sarathi wait": ("sarathi", {"admission": "wait", "output_lengths": "exact"}),
    "sarathi nested-wait": ("sarathi", {"admission": "nested-wait"}),
}
"""Name -> (scheduler, KV-cache options besides its size)."""


@dataclass(frozen=True)
class Run:
    """One run: the experiment part, the policy's name, rate (requests/s), cache (tokens or
    ``None``: the GPU's)."""

    part: str
    policy: str
    rate: float
    cache: int | None
    horizon: float
    seed: int


def scenario(run: Run) -> Scenario:
    """The run's scenario."""
    scheduler, options = POLICIES[run.policy]
    kv: dict[str, Any] = {**options, **({"tokens": run.cache} if run.cache else {"gpu": {}})}
    return build(
        Scenario,
        {
            "engine": {"token_budget": 512, "kv_cache": kv},
            "scheduler": scheduler,
            "workload": {
                "arrival": {"kind": "poisson", "rate": run.rate},
                "output": {"kind": "lognormal", "mean": 600, "sigma": 0.7},
                "max_output_len": 4096,
            },
            "run": {"horizon_s": run.horizon, "seed": run.seed},
        },
    )


def run_one(run: Run) -> dict[str, Any]:
    """Simulate one run; its row of the results table."""
    sc = scenario(run)
    res = simulate_classes(sc)
    e, c = res.engines["engine"], res.classes["requests"]
    return {
        "part": run.part,
        "policy": run.policy,
        "rate": run.rate,
        "cache_tokens": sc.engine.kv_cache.capacity,  # type: ignore[union-attr]
        "throughput": c["throughput"],
        "latency_p50": c["latency_p50"],
        "latency_p99": c["latency_p99"],
        "ttft_mean": c["ttft_mean"],
        "mean_jobs": c["mean_jobs"],
        "mem_mean": e["mem_mean"],
        "kv_mean": e["kv_mean"],
        "preemptions": e["preemptions"],
        "recomputed_tokens": e["recomputed_tokens"],
        "swapped_tokens": e["swapped_tokens"],
        "preempted_share": e["preempted_share"],
        "verdict": res.verdict,
    }


def plan(horizon: float, seed: int) -> list[Run]:
    """Every run of the experiment."""
    runs = [Run("policies", p, r, None, horizon, seed) for p in POLICIES for r in RATES]
    runs += [Run("cache", "sarathi recompute", SWEEP_RATE, m, horizon, seed) for m in CACHES]
    return runs


HEADERS = [
    "policy",
    "rate/s",
    "cache",
    "thr/s",
    "p50 s",
    "p99 s",
    "TTFT s",
    "preempt",
    "recomputed",
    "preempted",
    "verdict",
]


def cells(row: dict[str, Any]) -> list[str]:
    """A row of the printed table."""
    return [
        row["policy"],
        fmt(row["rate"], 2),
        f"{row['cache_tokens']:,}",
        fmt(row["throughput"], 3),
        fmt(row["latency_p50"], 1),
        fmt(row["latency_p99"], 1),
        fmt(row["ttft_mean"], 1),
        f"{row['preemptions']:,}",
        f"{row['recomputed_tokens']:,}",
        fmt(100 * row["preempted_share"], 1) + "%",
        row["verdict"],
    ]


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Throughput and preemptions by rate (policies), throughput by cache size (sweep)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for name in POLICIES:
        mine = [r for r in rows if r["part"] == "policies" and r["policy"] == name]
        if not mine:
            continue
        rates = [r["rate"] for r in mine]
        axes[0].plot(rates, [r["throughput"] for r in mine], marker="o", label=name)
        axes[1].plot(rates, [r["preemptions"] for r in mine], marker="o", label=name)
    axes[0].plot(list(RATES), list(RATES), ls="--", color="black", label="arrival rate")
    axes[0].set(xlabel="arrival rate (requests/s)", ylabel="throughput (requests/s)")
    axes[1].set(xlabel="arrival rate (requests/s)", ylabel="preemptions after warm-up")
    axes[0].legend(fontsize=8)
    sweep = [r for r in rows if r["part"] == "cache"]
    if sweep:
        axes[2].plot(
            [r["cache_tokens"] / 1000 for r in sweep], [r["throughput"] for r in sweep], marker="o"
        )
        axes[2].axhline(SWEEP_RATE, ls="--", color="black", label="arrival rate")
        axes[2].set(
            xlabel="KV cache (thousand tokens)", ylabel="throughput (requests/s)", xscale="log"
        )
        axes[2].xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axes[2].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axes[2].legend(fontsize=8)
    fig.suptitle("A memory-bound workload (outputs of 600 tokens on average)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the experiment and write the files; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizon", type=float, default=HORIZON_S, help="s per run (%(default)g)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (0)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (1)")
    parser.add_argument("--results", default=str(HERE / "results"), help="output folder")
    args = parser.parse_args(argv)
    if not args.horizon > 0:
        parser.error(f"--horizon: {args.horizon} is not > 0")
    runs = plan(args.horizon, args.seed)
    started = time.monotonic()
    outcome = run_all(
        runs,
        run_one,
        jobs=args.jobs,
        desc="memory",
        label=lambda r: f"{r.policy} {r.rate:g}/s",
    )
    wall = time.monotonic() - started
    rows = [outcome.results[i] for i in sorted(outcome.results)]
    for i, error in sorted(outcome.errors.items()):
        print(f"failed: {runs[i]}: {error}", file=sys.stderr)
    table = [cells(r) for r in rows]
    print(format_table(HEADERS, table))
    print(f"\n{len(rows)} runs of {args.horizon:g} s in {wall:.0f} s wall time")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    written = [
        write_csv(results / "memory.csv", rows),
        write_json(results / "memory.json", rows),
        plot(rows, results / "memory.png"),
    ]
    md = results / "memory.md"
    command = " ".join(["python experiments/memory.py", *(sys.argv[1:] if argv is None else argv)])
    md.write_text(
        f"# A memory-bound workload\n\nHorizon {args.horizon:g} s, seed {args.seed}; "
        f"`{command}`\n\n" + format_markdown(HEADERS, table) + "\n"
    )
    written.append(md)
    for path in written:
        print(f"wrote {path}")
    return 1 if outcome.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
