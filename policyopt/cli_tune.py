"""``policyopt tune``: tune a parametric policy on a network by simulation (``policyopt.tune``).

Bad input raises :class:`~policyopt.errors.SpecError` (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from policyopt.cli_learn import positive_arg, seeds_arg
from policyopt.cli_network import network_arg
from policyopt.errors import SpecError
from policyopt.jsonout import to_json, write_json
from policyopt.outdir import not_a_file
from policyopt.report import fmt, format_table, write_csv
from policyopt.tune import FAMILIES, TuneResult, TuneSettings, tune

TUNE_EPILOG = """\
examples:
  policyopt tune rybko-stolyar --family priority
  policyopt tune rybko-stolyar --family pressure --budget 60 --horizon 2000 --out runs/tune-rs
  policyopt tune fork-join --family batch-cap
  policyopt tune fork-join --family linear --train-seeds 0,1,2 --val-seeds 10,11 \\
      --test-seeds 20,21,22,23

Families: pressure (maximum pressure with a weight per class, weighted-pressure:W1,...,WK),
linear (index a_k z_k + b_k per class, linear:A1,B1,...), priority (a static order of the
classes, priority:A>B>..., by local search), batch-cap (the c-mu order with smaller batches
at LLM engines while few prompts wait, batch-cap:TOKENS,JOBS:c-mu, by local search on a
grid; networks with LLM engines only). Every candidate runs with the training seeds
(common random numbers); the best few are compared on the validation seeds; the winner, its
start and fcfs / max-pressure are reported on the test seeds (95% intervals over the seeds,
and the paired difference to max-pressure). The seed sets must not overlap. Each simulation
is appended to DIR/evaluations.jsonl as it finishes: rerun with the same --out to resume.
Writes tuned.json (the tuned spec, the search and the report), tune.csv and trace.png.
The tuned spec is a policy name: policyopt simulate NETWORK --policy "<spec>".
"""


def add_tune_parser(sub: Any, formatter: type) -> None:
    """Add ``tune`` to the subparsers ``sub`` of ``policyopt``."""
    p = sub.add_parser(
        "tune",
        help="tune a parametric policy on a network by simulation",
        description="Tune a parametric policy (weights, index, class order) by simulation "
        "with common random numbers.",
        epilog=TUNE_EPILOG,
        formatter_class=formatter,
    )
    p.add_argument("network", metavar="NETWORK", help="network: library name or file")
    p.add_argument("--family", required=True, metavar="F", help=f"one of {', '.join(FAMILIES)}")
    p.add_argument("--budget", default="40", metavar="N", help="candidates searched (40)")
    p.add_argument("--horizon", default="2000", metavar="S", help="simulated s per run (2000)")
    p.add_argument("--train-seeds", default="0,1", metavar="S,S", help="search seeds (0,1)")
    p.add_argument("--val-seeds", default="100,101", metavar="S,S", help="selection (100,101)")
    p.add_argument(
        "--test-seeds", default="200,201,202,203", metavar="S,S", help="report (200..203)"
    )
    p.add_argument("--out", metavar="DIR", help="output folder (policyopt-results/tune-NET-F)")
    p.add_argument("--json", action="store_true", help="print JSON to stdout instead of a table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    """``policyopt tune``."""
    net = network_arg(args.network)
    if net is None:
        raise SpecError("NETWORK", f"{args.network!r} is not a network", "see policyopt networks")
    if args.family not in FAMILIES:
        raise SpecError("--family", f"unknown family {args.family!r}", f"use {', '.join(FAMILIES)}")
    budget = positive_arg(args.budget, "--budget", int)
    settings = TuneSettings(
        horizon=positive_arg(args.horizon, "--horizon"),
        train=tuple(seeds_arg(args.train_seeds, "--train-seeds")),
        val=tuple(seeds_arg(args.val_seeds, "--val-seeds")),
        test=tuple(seeds_arg(args.test_seeds, "--test-seeds")),
        budget=budget,
    )
    out = Path(args.out or f"policyopt-results/tune-{net.name}-{args.family}")
    not_a_file(out, "--out")
    show = not args.no_progress and sys.stderr.isatty()
    bar = tqdm(total=budget, desc=f"tune {args.family}", unit="cand", disable=not show)
    try:
        result = tune(net, args.family, settings, out=out, progress=lambda n: bar.update(n - bar.n))
    finally:
        bar.close()
    written = write_results(result, out)
    if args.json:
        print(to_json(result.summary()))
    else:
        print(f"network {net.name}, family {args.family}: {len(result.trace)} candidates")
        print(f"tuned: {result.spec}")
        print(f"\ntest seeds {list(settings.test)}, horizon {settings.horizon:g} s:")
        print(report_table(result))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def report_rows(result: TuneResult) -> list[dict[str, Any]]:
    """One row per reported policy (role, spec, test mean and intervals)."""
    role = {result.spec: "tuned", result.start: "start"}
    rows = []
    for spec, r in result.test.items():
        name = role.get(spec, "designed")
        if spec == result.spec == result.start:
            name = "tuned (= start)"
        rows.append({"role": name, "policy": spec, **r})
    return rows


def report_table(result: TuneResult) -> str:
    """The test report as a table."""
    return format_table(
        ["role", "policy", "holding cost/s [95% CI]", "vs max-pressure [95% CI]"],
        [
            [
                r["role"],
                r["policy"] if len(r["policy"]) <= 60 else r["policy"][:57] + "...",
                f"{fmt(r['mean'], 2)} [{fmt(r['low'], 2)}, {fmt(r['high'], 2)}]",
                f"{fmt(r['vs_mp'], 2)} [{fmt(r['vs_mp_low'], 2)}, {fmt(r['vs_mp_high'], 2)}]",
            ]
            for r in report_rows(result)
        ],
    )


def write_results(result: TuneResult, out: Path) -> list[Path]:
    """``tuned.json``, ``tune.csv`` (the test report) and ``trace.png`` (the search)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = [
        write_json(out / "tuned.json", result.summary()),
        write_csv(out / "tune.csv", report_rows(result)),
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    costs = [c for _, c in result.trace]
    ax.plot(range(1, len(costs) + 1), costs, marker=".", label="candidate")
    best = [min(costs[: i + 1]) for i in range(len(costs))]
    ax.plot(range(1, len(costs) + 1), best, label="best so far")
    ax.set(xlabel="candidate", ylabel="training holding cost per second")
    ax.set_title(f"tune {result.family}")
    ax.legend()
    fig.tight_layout()
    path = out / "trace.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
