"""Tuned policies against the designed ones on four networks, with common random numbers.

For Rybko-Stolyar, fork-join, the criss-cross network (Dai and Gluzman's balanced heavy case)
and the extended six-class network (two stations), ``policyopt tune`` searches its families
(``pressure``, ``linear``, ``priority``, and ``batch-cap`` on the networks with LLM engines;
``--budget`` candidates each, training seeds 0 and 1), chooses each family's winner on
validation seeds 100 and 101, and reports the winners next to the designed policies (FCFS,
maximum pressure, fluid tracking, the proportionally randomized policy) and, where there are
LLM engines, the untuned rule ``batch-cap:auto,50:c-mu`` on test seeds 200 to 203: mean
holding cost per second with a 95% interval over the seeds, and the paired difference to
maximum pressure. Every policy meets the same arrivals and job sizes on a seed (common random
numbers). A second table compares the best policy found without a search over class orders
with the best designed one, the best static priority included.

Writes ``experiments/results/tune_networks.csv``/``.json`` and ``tune_networks.md``; the
evaluations of each network are kept in ``experiments/out/tune/NETWORK/`` (a rerun reuses
them: interrupt and rerun to resume).

    python experiments/tune_networks.py                  # the recorded setting
    python experiments/tune_networks.py --budget 10 --quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from policyopt.batch_cap import has_llm_engine
from policyopt.errors import SpecError
from policyopt.jsonout import write_json
from policyopt.model.networks_library import resolve_network
from policyopt.report import fmt, format_markdown, format_table, write_csv
from policyopt.sim.stats import t_interval
from policyopt.tune import FAMILIES, Evaluations, TuneSettings, report, tune

HERE = Path(__file__).resolve().parent
NETWORKS: dict[str, float] = {
    "rybko-stolyar": 1000.0,
    "fork-join": 1000.0,
    "criss-cross": 10000.0,
    "extended-six-class-2": 10000.0,
}
"""Network -> simulated seconds per run."""
DESIGNED = ("fcfs", "max-pressure", "fluid", "pr")
CAP_RULE = "batch-cap:auto,50:c-mu"
"""The untuned batch-cap rule, reported (role ``batch-cap rule``) on the networks with an LLM
engine; not one of the designed policies the verdict compares with (``verdict``)."""


SEARCHED_ORDERS = ("tuned priority",)
"""Roles that come from a search over class orders: with the designed policies, the reference
a policy found without one must beat (the best static priority is a designed policy)."""


def run_network(
    name: str, horizon: float, budget: int, out: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Tune every family on ``name``; the test rows of the winners and the designed policies,
    and the verdict row (:func:`verdict`)."""
    net = resolve_network(name)
    settings = TuneSettings(
        horizon=horizon, train=(0, 1), val=(100, 101), test=(200, 201, 202, 203), budget=budget
    )
    folder = out / name
    rows: list[dict[str, Any]] = []
    winners: dict[str, str] = {}
    started = time.monotonic()
    for family in FAMILIES:
        try:
            res = tune(net, family, settings, out=folder)
        except SpecError as exc:  # a family that does not fit the network (batch-cap: no LLM)
            print(f"{name}: family {family} skipped: {exc}")
            continue
        winners[res.spec] = f"tuned {family}"
    ev = Evaluations(net, horizon, folder / "evaluations.jsonl")
    rules = [CAP_RULE] if has_llm_engine(net) else []
    table = report(ev, [*winners, *DESIGNED, *rules], settings.test)
    wall = time.monotonic() - started
    for spec, r in table.items():
        rows.append(
            {
                "network": name,
                "role": winners.get(spec, "batch-cap rule" if spec in rules else "designed"),
                "policy": spec,
                **r,
                "wall_s": wall,
            }
        )
    return rows, verdict(name, ev, rows, settings.test)


def verdict(
    name: str, ev: Evaluations, rows: list[dict[str, Any]], seeds: tuple[int, ...]
) -> dict[str, Any]:
    """The best policy found without a search over class orders (the tuned pressure, linear
    and batch-cap winners) against the best designed one (the designed policies and the
    tuned static priority; the batch-cap rule is neither), by test mean: the paired difference
    over ``seeds`` (common random numbers) with its 95% interval, and the relative change."""
    free = [r for r in rows if r["role"].startswith("tuned") and r["role"] not in SEARCHED_ORDERS]
    ref = [r for r in rows if r["role"] == "designed" or r["role"] in SEARCHED_ORDERS]
    best = min(free, key=lambda r: r["mean"])
    base = min(ref, key=lambda r: r["mean"])
    diff = np.array([ev.cost(best["policy"], s) - ev.cost(base["policy"], s) for s in seeds])
    d, lo, hi = t_interval(diff)
    return {
        "network": name,
        "found": best["policy"],
        "found_role": best["role"],
        "found_mean": best["mean"],
        "designed": base["policy"],
        "designed_mean": base["mean"],
        "diff": d,
        "diff_low": lo,
        "diff_high": hi,
        "change": d / base["mean"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run every network and write the files; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=30, help="candidates per family (30)")
    parser.add_argument("--quick", action="store_true", help="horizons / 10 (a smoke run)")
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated")
    parser.add_argument("--out", default=str(HERE / "out" / "tune"), help="evaluations kept here")
    parser.add_argument("--results", default=str(HERE / "results"), help="output folder")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        parser.error(f"--networks: unknown {unknown}; use some of {', '.join(NETWORKS)}")
    rows: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    for name in names:
        horizon = NETWORKS[name] / (10 if args.quick else 1)
        net_rows, net_verdict = run_network(name, horizon, args.budget, Path(args.out))
        rows += net_rows
        verdicts.append(net_verdict)
        print(f"{name}: done", flush=True)
    headers = ["network", "role", "policy", "cost/s [95% CI]", "vs max-pressure [95% CI]"]
    cells = [
        [
            r["network"],
            r["role"],
            r["policy"] if len(r["policy"]) <= 48 else r["policy"][:45] + "...",
            f"{fmt(r['mean'], 2)} [{fmt(r['low'], 2)}, {fmt(r['high'], 2)}]",
            f"{fmt(r['vs_mp'], 2)} [{fmt(r['vs_mp_low'], 2)}, {fmt(r['vs_mp_high'], 2)}]",
        ]
        for r in rows
    ]
    print(format_table(headers, cells))
    v_headers = ["network", "found without an order search", "best designed", "change [95% CI]"]
    v_cells = [
        [
            v["network"],
            f"{v['found']} ({v['found_role']}): {fmt(v['found_mean'], 2)}",
            f"{v['designed']}: {fmt(v['designed_mean'], 2)}",
            f"{fmt(v['diff'], 2)} [{fmt(v['diff_low'], 2)}, {fmt(v['diff_high'], 2)}], "
            f"{100 * v['change']:+.1f}%",
        ]
        for v in verdicts
    ]
    print()
    print(format_table(v_headers, v_cells))
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    for path in (
        write_csv(results / "tune_networks.csv", rows),
        write_json(results / "tune_networks.json", {"rows": rows, "verdicts": verdicts}),
        write_csv(results / "tune_networks_verdict.csv", verdicts),
    ):
        print(f"wrote {path}")
    md = results / "tune_networks.md"
    md.write_text(
        "# Tuned against designed policies\n\n"
        f"budget {args.budget} per family{', quick' if args.quick else ''}; test seeds "
        "200-203\n\n" + format_markdown(headers, cells) + "\n\n"
        "## The best policy found without a search over class orders\n\n"
        "Against the best designed policy (FCFS, maximum pressure, fluid tracking, the "
        "proportionally randomized policy, and the best static priority, found by local "
        "search); the change is the paired difference in holding cost per second on the "
        "test seeds.\n\n" + format_markdown(v_headers, v_cells) + "\n"
    )
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
