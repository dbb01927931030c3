"""PPO with a behaviour-cloning warm start on the Rybko-Stolyar agent network (issue 4).

Trains PPO (warm-started by imitating maximum pressure) on ``rybko-stolyar`` at its nominal
load 0.9, then evaluates it against maximum pressure, fluid tracking and the best static
priority (every per-engine priority order is tried; the one of least mean number in system is
kept) on common random numbers, and draws the learning curve (mean holding cost per second of
the periodic evaluations against env steps, with the baselines as horizontal lines).

Writes into ``--out`` (default ``experiments/out/learn_rybko_stolyar``): the training
directory ``ppo/`` (``model.zip``, ``config.json``, checkpoints, ``learning_curve.csv``), the
evaluation files (``evaluate.csv``, ``summary.csv``, ``evaluate.json``, ``evaluate.png``),
``learning_curve.png`` and ``report.md``.

    python experiments/learn_rybko_stolyar.py                       # 30 min budget (~1e6 steps)
    python experiments/learn_rybko_stolyar.py --timesteps 4000 --eval-horizon 300 --seeds 0
                                                                    # a smoke run of a minute
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from policyopt.learn.common import load_hyperparams
from policyopt.learn.evaluate import evaluate
from policyopt.learn.train import train
from policyopt.model.networks_library import get_network
from policyopt.sim.network_sim import simulate_network

NETWORK = "rybko-stolyar"
OUT = Path(__file__).parent / "out" / "learn_rybko_stolyar"


def static_priorities(network: str) -> list[str]:
    """One ``priority:A>B>...`` name per distinct combination of per-engine orders."""
    topo = get_network(network).topology
    at: dict[int, list[str]] = {}
    for k, engines in enumerate(topo.eligible):
        at.setdefault(engines[0], []).append(topo.classes[k])
    names = []
    for orders in itertools.product(*(itertools.permutations(c) for c in at.values())):
        names.append("priority:" + ">".join(c for order in orders for c in order))
    return names


def best_static_priority(network: str, horizon: float, seed: int) -> tuple[str, dict[str, float]]:
    """The static priority of least mean number in system (one run each), and all of them."""
    net = get_network(network)
    scores = {
        p: simulate_network(net, p, horizon=horizon, seed=seed).mean_jobs
        for p in static_priorities(network)
    }
    return min(scores, key=scores.__getitem__), scores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--timesteps", type=int, default=1_000_000, help="PPO env steps")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--config", help="hyperparameter YAML (default: the documented defaults)")
    ap.add_argument("--bc", default="max-pressure", help="warm-start heuristic ('' for none)")
    ap.add_argument("--eval-horizon", type=float, default=3600.0, help="seconds per eval run")
    ap.add_argument("--seeds", default="0,1,2", help="evaluation seeds")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    hp = load_hyperparams(args.config)
    # evaluate and checkpoint about 20 times over the run
    hp["eval"]["eval_freq"] = max(1000, args.timesteps // 20)
    hp["checkpoint"]["save_freq"] = max(1000, args.timesteps // 10)

    t0 = time.perf_counter()
    res = train(
        NETWORK,
        "ppo",
        args.timesteps,
        args.seed,
        args.out / "ppo",
        hp,
        bc_policy=args.bc or None,
    )
    train_s = time.perf_counter() - t0
    print(f"trained {res.timesteps} steps in {train_s:.0f} s ({res.steps_per_second:.0f} steps/s)")

    seeds = [int(s) for s in args.seeds.split(",")]
    best, scores = best_static_priority(NETWORK, args.eval_horizon, seeds[0])
    print(f"best static priority: {best} ({scores[best]:.1f} jobs)")
    policies = ["max-pressure", "fluid", best, f"ppo:{res.out_dir}"]
    ev = evaluate(NETWORK, policies, [None], seeds, args.eval_horizon, out=args.out)
    print(ev.table())

    # learning curve against the baselines (their holding cost per second)
    curve_path = res.out_dir / "learning_curve.csv"
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if curve_path.is_file():
        with curve_path.open() as fh:
            rows: list[dict[str, Any]] = list(csv.DictReader(fh))
        ax.plot(
            [int(r["timesteps"]) for r in rows],
            [float(r["mean_holding_cost"]) for r in rows],
            marker="o",
            label=f"PPO (eval episodes of {hp['env']['horizon']:g} s)",
        )
    for i, r in enumerate(ev.summary[:-1]):
        ax.axhline(
            r["holding_cost"],
            linestyle="--",
            linewidth=1,
            color=f"C{i + 1}",
            label=f"{r['policy']} ({args.eval_horizon:g} s runs)",
        )
    ax.set_xlabel("env steps")
    ax.set_ylabel("holding cost per second (= mean jobs)")
    ax.set_yscale("log")
    ax.set_title(f"{NETWORK}: PPO with {args.bc or 'no'} warm start")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "learning_curve.png", dpi=120)
    plt.close(fig)

    ppo_row = ev.summary[-1]
    base = min(ev.summary[:-1], key=lambda r: r["mean_jobs"])
    gap = ppo_row["mean_jobs"] / base["mean_jobs"] - 1.0
    report = [
        f"# PPO on {NETWORK}",
        "",
        f"{res.timesteps} env steps in {train_s:.0f} s ({res.steps_per_second:.0f} steps/s), "
        f"warm start: {json.dumps(res.bc) if res.bc else 'none'}.",
        f"Evaluation: seeds {args.seeds}, {args.eval_horizon:g} s per run.",
        "",
        "```text",
        ev.table(),
        "```",
        "",
        f"PPO vs the best baseline ({base['policy']}): {100 * gap:+.1f}% mean jobs in system.",
        "",
    ]
    (args.out / "report.md").write_text("\n".join(report))
    print(f"PPO vs {base['policy']}: {100 * gap:+.1f}% mean jobs; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
