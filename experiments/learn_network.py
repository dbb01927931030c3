"""PPO with a behaviour-cloning warm start on an agent network, against the designed policies.

Trains PPO on ``--network`` (default ``rybko-stolyar``) at its nominal load (0.9 of the
capacity boundary in the library), warm-started by imitating ``--bc``, then evaluates on common
random numbers (``--seeds`` x ``--eval-horizon`` s):

* maximum pressure, fluid tracking, FCFS, the proportionally randomized policy ``pr`` and the
  **best static priority** (every combination of per-engine class orders is simulated once,
  ``--search-horizon`` s with the first seed; the one of least mean number in system is kept);
* the behaviour-cloned model before any RL step (``ppo/bc``), the final PPO model (``--algo``:
  discounted ``ppo`` or average-cost ``ppo-avg``), and the
  **selected** PPO model: the checkpoint (or warm start, or final model) of least mean number
  in system on separate **validation** runs (``--val-seeds`` x ``--val-horizon`` s), so the
  choice does not peek at the test seeds (early stopping by validation, as usual in RL).

The learning curve is every checkpoint's validation score.

``--bc`` takes any policy name, ``best-priority`` (default: the static priority the search
found) or ``none`` (PPO from a random initial policy).

Writes into ``--out`` (default ``experiments/out/learn_<network>_<bc>``): ``ppo/`` (the
training directory), ``evaluate.csv`` / ``summary.csv`` / ``evaluate.json`` / ``evaluate.png``
(test runs of the baselines and models), ``curve.csv`` and ``learning_curve.png`` (validation
runs of the checkpoints),
``priorities.csv`` (the search) and ``report.md``.

    python experiments/learn_network.py                                  # rybko-stolyar, 1e6 steps
    python experiments/learn_network.py --network fork-join --bc max-pressure
    python experiments/learn_network.py --network criss-cross --algo ppo-avg --bc pr
    python experiments/learn_network.py --timesteps 4000 --eval-horizon 300 --seeds 0
                                                                         # a smoke run
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

from policyopt.jsonout import to_json
from policyopt.learn.common import load_hyperparams
from policyopt.learn.evaluate import evaluate
from policyopt.learn.train import train
from policyopt.model.networks_library import get_network
from policyopt.sim.network_sim import simulate_network

HERE = Path(__file__).parent


def static_priorities(network: str) -> list[str]:
    """One ``priority:A>B>...`` name per combination of per-engine class orders."""
    topo = get_network(network).topology
    at: dict[int, list[str]] = {}
    for k, engines in enumerate(topo.eligible):
        at.setdefault(engines[0], []).append(topo.classes[k])
    return [
        "priority:" + ">".join(c for order in orders for c in order)
        for orders in itertools.product(*(itertools.permutations(c) for c in at.values()))
    ]


def best_static_priority(network: str, horizon: float, seed: int) -> tuple[str, dict[str, float]]:
    """The static priority of least mean number in system (one run each), and every score."""
    net = get_network(network)
    scores = {
        p: simulate_network(net, p, horizon=horizon, seed=seed).mean_jobs
        for p in static_priorities(network)
    }
    return min(scores, key=scores.__getitem__), scores


def checkpoints(ppo_dir: Path) -> list[tuple[int, Path]]:
    """``(steps, path)`` of the checkpoints in ``ppo_dir/checkpoints``, by steps."""
    found = []
    for p in (ppo_dir / "checkpoints").glob("model_*_steps.zip"):
        found.append((int(p.stem.split("_")[1]), p))
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--network", default="rybko-stolyar", help="library name or network file")
    ap.add_argument("--timesteps", type=int, default=1_000_000, help="PPO env steps")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument(
        "--algo", default="ppo", choices=["ppo", "ppo-avg"], help="discounted or average-cost PPO"
    )
    ap.add_argument("--config", help="hyperparameter YAML (default: the documented defaults)")
    ap.add_argument(
        "--bc", default="best-priority", help="warm start: best-priority, none, or a policy"
    )
    ap.add_argument("--eval-horizon", type=float, default=3600.0, help="seconds per eval run")
    ap.add_argument("--search-horizon", type=float, default=3600.0, help="seconds per search run")
    ap.add_argument("--seeds", default="0,1,2", help="test seeds (the reported numbers)")
    ap.add_argument("--val-seeds", default="100,101", help="validation seeds (model selection)")
    ap.add_argument("--val-horizon", type=float, default=1800.0, help="seconds per validation run")
    ap.add_argument("--curve-points", type=int, default=20, help="checkpoints saved and validated")
    ap.add_argument("--out", type=Path, help="output directory")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    val_seeds = [int(s) for s in args.val_seeds.split(",")]
    if set(seeds) & set(val_seeds):
        ap.error("--seeds and --val-seeds must not share a seed")
    net = get_network(args.network)
    tag = "".join(c if c.isalnum() or c in "-_" else "-" for c in args.bc)
    if args.algo != "ppo":
        tag = f"{args.algo}_{tag}"
    out: Path = args.out or HERE / "out" / f"learn_{net.name}_{tag}"
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    best, scores = best_static_priority(args.network, args.search_horizon, seeds[0])
    with (out / "priorities.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["policy", "mean_jobs"])
        w.writerows(sorted(scores.items(), key=lambda kv: kv[1]))
    print(
        f"best static priority: {best} ({scores[best]:.1f} jobs; {len(scores)} searched "
        f"in {time.perf_counter() - t0:.0f} s)"
    )
    bc = {"best-priority": best, "none": None}.get(args.bc, args.bc)

    hp = load_hyperparams(args.config)
    hp["eval"]["eval_freq"] = 0  # the curve comes from the checkpoints below
    hp["checkpoint"]["save_freq"] = max(1000, args.timesteps // max(1, args.curve_points))
    t0 = time.perf_counter()
    algo = args.algo
    res = train(args.network, algo, args.timesteps, args.seed, out / "ppo", hp, bc_policy=bc)
    train_s = time.perf_counter() - t0
    print(f"trained {res.timesteps} steps in {train_s:.0f} s ({res.steps_per_second:.0f} steps/s)")

    # validation: the warm start, every checkpoint and the final model; keep the best
    candidates: list[tuple[int, str]] = []
    if bc is not None:
        candidates.append((0, f"{algo}:{res.out_dir / 'bc'}"))
    candidates += [(steps, f"{algo}:{p}") for steps, p in checkpoints(res.out_dir)]
    if not candidates or candidates[-1][0] != res.timesteps:
        candidates.append((res.timesteps, f"{algo}:{res.out_dir}"))
    t0 = time.perf_counter()
    val = evaluate(args.network, [c for _, c in candidates], [None], val_seeds, args.val_horizon)
    curve = [
        (steps, r["mean_jobs"], r["mean_jobs_low"], r["mean_jobs_high"])
        for (steps, _), r in zip(candidates, val.summary, strict=True)
    ]
    pick = min(range(len(curve)), key=lambda i: curve[i][1])
    selected_steps, selected = candidates[pick]
    print(
        f"validated {len(candidates)} models in {time.perf_counter() - t0:.0f} s; selected "
        f"{selected} ({selected_steps} steps, {curve[pick][1]:.1f} jobs on validation)"
    )
    with (out / "curve.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timesteps", "model", "val_mean_jobs", "val_low", "val_high"])
        for (steps, name), c in zip(candidates, curve, strict=True):
            w.writerow([steps, name, c[1], c[2], c[3]])

    # test: baselines, warm start, final and selected models on the test seeds
    designed = ["max-pressure", "fluid", "fcfs", "pr", best]
    policies = list(designed)
    if bc is not None:
        policies.append(f"{algo}:{res.out_dir / 'bc'}")
    final_name = f"{algo}:{res.out_dir}"
    policies.append(final_name)
    if selected not in policies:
        policies.append(selected)
    ev = evaluate(args.network, policies, [None], seeds, args.eval_horizon, out=out)
    print(ev.table())
    rows = {r["policy"]: r for r in ev.summary}

    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = [c[0] for c in curve]
    ax.plot(
        xs,
        [c[1] for c in curve],
        marker="o",
        color="C0",
        label=f"PPO checkpoints (validation: {len(val_seeds)} x {args.val_horizon:g} s)",
    )
    ax.fill_between(xs, [c[2] for c in curve], [c[3] for c in curve], color="C0", alpha=0.2)
    ax.plot(
        [selected_steps],
        [curve[pick][1]],
        marker="*",
        markersize=14,
        color="C0",
        linestyle="none",
        label="selected",
    )
    for i, name in enumerate(designed):
        ax.axhline(
            rows[name]["mean_jobs"],
            linestyle="--",
            linewidth=1,
            color=f"C{i + 1}",
            label=f"{name} (test: {len(seeds)} x {args.eval_horizon:g} s)",
        )
    ax.set_xlabel("PPO env steps (0: the behaviour-cloned warm start)")
    ax.set_ylabel("mean jobs in system")
    ax.set_yscale("log")
    ax.set_title(f"{net.name}: {algo}, warm start {bc or 'none'}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=120)
    plt.close(fig)

    base = min((rows[n] for n in designed), key=lambda r: r["mean_jobs"])
    gap_final = rows[final_name]["mean_jobs"] / base["mean_jobs"] - 1.0
    gap_selected = rows[selected]["mean_jobs"] / base["mean_jobs"] - 1.0
    bc_txt = json.dumps(res.bc) if res.bc else "none"
    report = [
        f"# {algo} on {net.name}",
        "",
        f"{res.timesteps} env steps in {train_s:.0f} s of training "
        f"({res.steps_per_second:.0f} steps/s), warm start: {bc_txt}.",
        f"Test: seeds {args.seeds}, {args.eval_horizon:g} s per run. Validation (model "
        f"selection): seeds {args.val_seeds}, {args.val_horizon:g} s per run. Best static "
        f"priority of {len(scores)} (one {args.search_horizon:g} s run each): {best}.",
        "",
        "```text",
        ev.table(),
        "```",
        "",
        f"Selected model: {selected} ({selected_steps} steps).",
        f"PPO vs the best baseline ({base['policy']}): final model {100 * gap_final:+.1f}%, "
        f"selected model {100 * gap_selected:+.1f}% mean jobs in system.",
        "",
        "Validation curve (steps: mean jobs): "
        + ", ".join(f"{st}: {m:.1f}" for st, m, _, _ in curve),
        "",
    ]
    (out / "report.md").write_text("\n".join(report))
    summary: dict[str, Any] = {
        "network": net.name,
        "algo": algo,
        "bc": bc,
        "designed": designed,
        "seeds": seeds,
        "eval_horizon": args.eval_horizon,
        "val_seeds": val_seeds,
        "val_horizon": args.val_horizon,
        "timesteps": res.timesteps,
        "train_seconds": train_s,
        "best_priority": best,
        "selected": selected,
        "selected_steps": selected_steps,
        "gap_final": gap_final,
        "gap_selected": gap_selected,
        "summary": ev.to_dict()["summary"],
        "curve": curve,
    }
    (out / "result.json").write_text(to_json(summary))
    print(
        f"PPO vs {base['policy']}: final {100 * gap_final:+.1f}%, selected "
        f"{100 * gap_selected:+.1f}% mean jobs; wrote {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
