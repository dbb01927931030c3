"""``policyopt boundary``: the largest stable load of one scheduler (one engine) or one policy
(a network), by bisection with a sequential test (:mod:`policyopt.boundary`).

Progress goes to stderr, a line per simulation; the table of points, the interval and the
share of capacity to stdout (``--json``: one JSON document); ``--out DIR`` writes
``boundary.csv``, ``boundary.json`` and ``boundary.png``. Ctrl-C prints and writes what was
judged so far (exit code 130).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from policyopt.boundary import (
    BoundaryInterrupted,
    BoundarySearch,
    Evaluate,
    Point,
    SearchSettings,
    Trial,
    find_boundary,
)
from policyopt.boundary_report import (
    BOUNDARY_FILES,
    header_lines,
    points_table,
    result_lines,
    write_boundary,
)
from policyopt.boundary_targets import engine_search, network_search
from policyopt.cli_network import DEFAULT_NETWORK_HORIZON_S, network_arg
from policyopt.errors import SpecError
from policyopt.jsonout import to_json
from policyopt.model.network import scenario_network
from policyopt.outdir import explicit_out
from policyopt.report import fmt_load
from policyopt.sim.run import check_run_size, expected_requests

DEFAULT_BOUNDARY_HORIZON_S = 1800.0
"""The sequential test's first horizon, simulated seconds (one engine and networks)."""
DEFAULT_MAX_HORIZON_FACTOR = 16
"""The largest horizon is this many times the first (four doublings)."""


def _settings(args: argparse.Namespace) -> SearchSettings:
    """The search settings of the command line (defaults of :class:`SearchSettings`)."""
    horizon = args.horizon or DEFAULT_BOUNDARY_HORIZON_S
    given: dict[str, Any] = {
        "low": args.low,
        "high": args.high,
        "tol": args.tol,
        "max_points": args.max_points,
    }
    return SearchSettings(
        **{k: v for k, v in given.items() if v is not None},
        horizon_s=horizon,
        max_horizon_s=args.max_horizon or DEFAULT_MAX_HORIZON_FACTOR * horizon,
        seed=args.seed or 0,
    )


def _target(args: argparse.Namespace, settings: SearchSettings) -> tuple[BoundarySearch, Evaluate]:
    """The search and its evaluator for CONFIG: a network under ``--policy``, or one engine
    under ``--scheduler`` (a scenario with request classes or a KV cache runs as its
    one-engine network, under ``--policy``)."""
    from policyopt.cli import load_config

    net = network_arg(args.config)
    if net is not None:
        if args.scheduler is not None:
            raise SpecError(
                "--scheduler",
                "a network's schedulers are set per engine in its file",
                "use --policy",
            )
        return network_search(net, args.policy or "fcfs", settings)
    scen = load_config(args.config, scheduler=args.scheduler)
    if scen.network_form:
        options = {"samples": scen.run.samples}
        if scen.run.warmup_s is not None:
            options["warmup"] = scen.run.warmup_s
        name = f"{args.config} (one engine)"
        return network_search(
            scenario_network(scen), args.policy or "fcfs", settings, options, name
        )
    if args.policy is not None:
        raise SpecError(
            "--policy",
            "a policy orders request classes, and this scenario has one workload",
            "use --scheduler for one engine, or give a network",
        )
    return engine_search(scen, settings)


def _progress(enabled: bool) -> Any:
    """A callback printing one line per simulation to stderr (or nothing)."""

    def line(point: Point, trial: Trial) -> None:
        if enabled:
            print(
                f"boundary: load {fmt_load(point.load)}, horizon {trial.horizon_s:g} s: "
                f"{trial.verdict} ({trial.wall_s:.2f} s)",
                file=sys.stderr,
                flush=True,
            )

    return line


def cmd_boundary(args: argparse.Namespace) -> int:
    """``policyopt boundary``: search, then the table, the interval and the files."""
    settings = _settings(args)
    search, evaluate = _target(args, settings)
    check_run_size(
        expected_requests(settings.high * search.capacity_rate, settings.max_horizon_s),
        f"the longest run (load {settings.high:g} x {search.capacity_rate:.4g} requests/s x "
        f"horizon {settings.max_horizon_s:g} s)",
        force=args.force,
    )
    folder = explicit_out(args.out, BOUNDARY_FILES, overwrite=args.overwrite) if args.out else None
    if not args.no_progress:
        print(
            f"boundary: {search.target}, loads {settings.low:g} to {settings.high:g} x "
            f"{search.capacity_name}, horizons {settings.horizon_s:g} s doubling up to "
            f"{settings.max_horizon_s:g} s, seed {settings.seed}",
            file=sys.stderr,
            flush=True,
        )
    code = 0
    try:
        find_boundary(search, evaluate, _progress(not args.no_progress))
    except BoundaryInterrupted as stop:
        search, code = stop.search, 130
    doc = search.to_dict()
    written = write_boundary(search, folder, doc) if folder is not None else []
    if args.json:
        print(to_json(doc))
    else:
        print("\n".join(header_lines(search)))
        print()
        print(points_table(search))
        print()
        print("\n".join(result_lines(search)))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if code == 130:
        print(
            f"policyopt: interrupted after {len(search.points)} points; printed what was judged",
            file=sys.stderr,
        )
    return code


BOUNDARY_EPILOG = f"""\
examples:
  policyopt boundary --scheduler vllm                 # the paper's engine: about 0.87 lambda*
  policyopt boundary examples/scenario.yaml --scheduler orca --tol 0.01 --out results/b
  policyopt boundary --scheduler fastertransformer --json
  policyopt boundary rybko-stolyar --policy max-pressure --horizon 3600

The load is a multiple of the capacity: lambda* = mu / (m_p + m_d) for one engine, theta*
of the static planning LP for a network (or a scenario with request classes). The search
judges --high first, then --low (halved until stable), then bisects until the interval's
width is at most --tol of its upper end. Each load gets a sequential test: a run of
--horizon simulated seconds and its drift verdict; an inconclusive verdict doubles the
horizon, up to --max-horizon (default {DEFAULT_MAX_HORIZON_FACTOR} x --horizon), where the
load counts as inconclusive (not stable). Loads of at least 1 never count as stable (no
scheduler carries more than capacity; the drift test's 2% tolerance can call them stable).
The output: every load judged (a table), the interval [last stable, first not stable], and
the share of capacity the scheduler keeps (the interval's midpoint). Same seed, same result.
Progress lines go to stderr; Ctrl-C prints what was judged (exit code 130). Default first
horizon {DEFAULT_BOUNDARY_HORIZON_S:g} s (the compare default for networks is
{DEFAULT_NETWORK_HORIZON_S:g} s).
"""


def add_boundary_arguments(p: argparse.ArgumentParser, number: Any, count: Any) -> None:
    """The options of ``boundary`` (``number``/``count``: argparse types for a positive float
    and a whole number >= 2)."""
    p.add_argument("--scheduler", metavar="NAME", help="scheduler (one engine; default: CONFIG's)")
    p.add_argument(
        "--policy",
        metavar="NAME",
        help="policy (a network, or a scenario with request classes; default fcfs)",
    )
    p.add_argument("--low", type=number, metavar="X", help="first stable guess (default 0.5)")
    p.add_argument("--high", type=number, metavar="X", help="first unstable guess (default 1.2)")
    p.add_argument(
        "--tol",
        type=number,
        metavar="R",
        help="stop when the interval's width is at most R x its upper end (default 0.02)",
    )
    p.add_argument(
        "--horizon",
        type=number,
        metavar="S",
        help=f"first horizon of each load, simulated s (default {DEFAULT_BOUNDARY_HORIZON_S:g})",
    )
    p.add_argument(
        "--max-horizon",
        type=number,
        metavar="S",
        help=f"largest horizon (default {DEFAULT_MAX_HORIZON_FACTOR} x --horizon)",
    )
    p.add_argument("--max-points", type=count, metavar="N", help="most loads judged (default 20)")
    p.add_argument("--seed", type=int, metavar="N", help="random seed (default 0)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write boundary.csv, boundary.json and boundary.png here; a DIR holding them is "
        "refused without --overwrite",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the files in --out")
    p.add_argument("--json", action="store_true", help="print JSON to stdout instead of a table")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
