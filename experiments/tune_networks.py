"""Tuned policies against the designed ones on four networks, with common random numbers.

For Rybko-Stolyar, fork-join, the criss-cross network (Dai and Gluzman's balanced heavy case)
and the extended six-class network (two stations), ``policyopt tune`` searches its three
families (``pressure``, ``linear``, ``priority``; ``--budget`` candidates each, training seeds
0 and 1), chooses each family's winner on validation seeds 100 and 101, and reports the
winners next to the designed policies (FCFS, maximum pressure, fluid tracking, the
proportionally randomized policy) on test seeds 200 to 203: mean holding cost per second with
a 95% interval over the seeds, and the paired difference to maximum pressure. Every policy
meets the same arrivals and job sizes on a seed (common random numbers).

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

from policyopt.jsonout import write_json
from policyopt.model.networks_library import resolve_network
from policyopt.report import fmt, format_markdown, format_table, write_csv
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


def run_network(name: str, horizon: float, budget: int, out: Path) -> list[dict[str, Any]]:
    """Tune every family on ``name``; the test rows of the winners and the designed policies."""
    net = resolve_network(name)
    settings = TuneSettings(
        horizon=horizon, train=(0, 1), val=(100, 101), test=(200, 201, 202, 203), budget=budget
    )
    folder = out / name
    rows: list[dict[str, Any]] = []
    winners: dict[str, str] = {}
    started = time.monotonic()
    for family in FAMILIES:
        res = tune(net, family, settings, out=folder)
        winners[res.spec] = f"tuned {family}"
    ev = Evaluations(net, horizon, folder / "evaluations.jsonl")
    table = report(ev, [*winners, *DESIGNED], settings.test)
    wall = time.monotonic() - started
    for spec, r in table.items():
        rows.append(
            {
                "network": name,
                "role": winners.get(spec, "designed"),
                "policy": spec,
                **r,
                "wall_s": wall,
            }
        )
    return rows


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
    for name in names:
        horizon = NETWORKS[name] / (10 if args.quick else 1)
        rows += run_network(name, horizon, args.budget, Path(args.out))
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
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    for path in (
        write_csv(results / "tune_networks.csv", rows),
        write_json(results / "tune_networks.json", rows),
    ):
        print(f"wrote {path}")
    md = results / "tune_networks.md"
    md.write_text(
        "# Tuned against designed policies\n\n"
        f"budget {args.budget} per family{', quick' if args.quick else ''}; test seeds "
        "200-203\n\n" + format_markdown(headers, cells) + "\n"
    )
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
