"""``policyopt optimal``: the optimal average cost of a small station network, with bounds,
against every static priority (:mod:`policyopt.solvers.mdp`).

Bad input raises :class:`~policyopt.errors.SpecError` (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from policyopt.cli_learn import positive_arg
from policyopt.cli_network import network_arg
from policyopt.errors import SpecError
from policyopt.jsonout import to_json, write_json
from policyopt.optimal_policy import ActionTable, policy_table
from policyopt.outdir import not_a_file
from policyopt.policies import make_policy, split_policy_names
from policyopt.report import fmt, format_table, write_csv
from policyopt.solvers import mdp

OPTIMAL_EPILOG = """\
examples:
  policyopt optimal criss-cross
  policyopt optimal criss-cross --caps 60 --priorities
  policyopt optimal criss-cross-bm --caps 30 --policies c-mu,max-pressure,max-pressure:dai-lin
  policyopt optimal lu-kumar --caps 25,25,25,25 --tol 1e-5 --out runs/lu-kumar-optimal
  policyopt optimal extended-six-class-2 --caps 25,3,8,25,6,3 --loss-cost 2000

The network must be made of one-server preemptive-resume stations with exponential service,
Poisson arrivals and routing without forks (criss-cross, lu-kumar, classic-rybko-stolyar,
reentrant-L, extended-six-class-L). Class k holds at most caps[k] jobs: arrivals to a full
class are lost (each charged --loss-cost, 0 by default), a job moving into a full class stays
where it is. Relative value iteration gives the optimal average cost per second (holding cost,
plus the charges for lost arrivals) among work-conserving policies of that truncated network,
between two bounds; --priorities evaluates every static priority the same
way, and --policies the named policies whose order is a function of the job counts
(re-decided at every event of the network). The cost grows with the caps towards the
network's own: raise them until it stops changing (the at-cap column is the stationary
probability of sitting at a cap). Writes optimal.json, optimal.csv and optimal_table.npz, the
optimal policy's actions: run it as the policy table:DIR/optimal_table.npz (simulate,
compare, evaluate).
"""

AT_CAP_WARNING = 1e-3
"""Above this stationary probability of sitting at a cap, the command warns that the caps
bind."""

MAX_PRIORITIES = 720
"""The most static priorities ``--priorities`` evaluates."""


def add_optimal_parser(sub: Any, formatter: type) -> None:
    """Add ``optimal`` to the subparsers ``sub`` of ``policyopt``."""
    p = sub.add_parser(
        "optimal",
        help="optimal average cost of a small station network (value iteration)",
        description="The optimal average holding cost of a small network of exponential "
        "stations, by relative value iteration on the truncated Markov decision process.",
        epilog=OPTIMAL_EPILOG,
        formatter_class=formatter,
    )
    p.add_argument("network", metavar="NETWORK", help="network: library name or file")
    p.add_argument(
        "--caps", default="40", metavar="N[,N...]", help="jobs per class at most (40 for each)"
    )
    p.add_argument(
        "--loss-cost",
        default="0",
        metavar="C[,C...]",
        help="cost charged per arrival lost at a full class, per class or one for all (0)",
    )
    p.add_argument("--tol", default="1e-4", metavar="T", help="relative width of the bounds")
    p.add_argument("--max-sweeps", default="200000", metavar="N", help="sweeps at most (200000)")
    p.add_argument(
        "--threads",
        default="1",
        metavar="N",
        help="threads of the compiled sweeps (1; at most the machine's cores)",
    )
    p.add_argument("--priorities", action="store_true", help="also evaluate every static priority")
    p.add_argument(
        "--policies",
        metavar="P1,P2,...",
        help="also evaluate these policies (functions of the job counts: c-mu, lbfs, "
        "max-weight, max-pressure, max-pressure:dai-lin, weighted-pressure:..., linear:...)",
    )
    p.add_argument("--out", metavar="DIR", help="output folder (policyopt-results/optimal-NET)")
    p.add_argument("--json", action="store_true", help="print JSON to stdout instead of a table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_optimal)


def per_class_arg(text: str, field: str, kind: type = float, zero: bool = False) -> Any:
    """``--caps``, ``--loss-cost``: one number for every class, or one per class separated by
    commas (each > 0, or >= 0 with ``zero``; whole numbers when ``kind`` is ``int``)."""
    values = [positive_arg(v, field, kind, zero) for v in text.split(",")]
    return values[0] if len(values) == 1 else values


def cmd_optimal(args: argparse.Namespace) -> int:
    """``policyopt optimal``."""
    net = network_arg(args.network)
    if net is None:
        raise SpecError("NETWORK", f"{args.network!r} is not a network", "see policyopt networks")
    tol = positive_arg(args.tol, "--tol")
    max_sweeps = positive_arg(args.max_sweeps, "--max-sweeps", int)
    threads = positive_arg(args.threads, "--threads", int)
    caps = per_class_arg(args.caps, "--caps", int)
    model = mdp.chain_model(net, caps, per_class_arg(args.loss_cost, "--loss-cost", zero=True))
    orders = mdp.priority_orders(model) if args.priorities else []
    if len(orders) > MAX_PRIORITIES:
        raise SpecError(
            "--priorities",
            f"{len(orders)} static priorities are more than {MAX_PRIORITIES}",
            "leave --priorities out",
        )
    names = [n for n in split_policy_names(args.policies or "") if n]
    tables = {}
    for name in names:
        try:
            tables[name] = policy_table(net, model, make_policy(name))
        except SpecError as err:
            raise SpecError("--policies", f"{name}: {err.problem}", err.fix) from None
    out = Path(args.out or f"policyopt-results/optimal-{net.name}")
    not_a_file(out, "--out")
    show = not args.no_progress and sys.stderr.isatty()
    rows: list[dict[str, Any]] = []
    total = 1 + len(orders) + len(tables)
    bar = tqdm(total=total, desc="value iteration", unit="policy", disable=not show)

    def kw(label: str) -> dict[str, Any]:
        def progress(sweeps: int) -> None:
            if show and sweeps % 1024 == 0:
                bar.set_postfix_str(f"{label}: {sweeps} sweeps")

        return {"tol": tol, "max_sweeps": max_sweeps, "progress": progress, "threads": threads}

    best: mdp.Solution | None = None
    interrupted = False
    try:
        best = mdp.solve(model, **kw("optimal"))
        rows.append(solution_row(best, best.cost))
        bar.update()
        for order in orders:
            rows.append(solution_row(mdp.evaluate(model, order, **kw(">".join(order))), best.cost))
            bar.update()
        for name, actions in tables.items():
            sol = mdp.evaluate_table(model, actions, name, **kw(name))
            rows.append(solution_row(sol, best.cost))
            bar.update()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    if best is None:
        print("interrupted before the optimal policy was found: nothing to write", file=sys.stderr)
        return 130
    summary = {
        "network": net.name,
        "classes": list(model.classes),
        "caps": [int(c) for c in model.caps],
        "loss_cost": [float(c) for c in model.loss_cost],
        "states": model.n_states,
        "events_per_s": model.Lambda,
        "interrupted": interrupted,
        "policies": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    written = [
        write_json(out / "optimal.json", summary),
        write_csv(out / "optimal.csv", rows),
        ActionTable.of(best).save(out / "optimal_table.npz"),
    ]
    if args.json:
        print(to_json(summary))
    else:
        caps = ",".join(str(c) for c in summary["caps"])
        print(f"network {net.name}: {model.n_states:,} states (caps {caps})")
        print(table(rows))
        if rows[0]["at_cap"] > AT_CAP_WARNING:
            charge = "raise the charge" if model.loss_cost.any() else "charge lost arrivals"
            print(
                f"note: the optimal policy sits at a cap with probability {rows[0]['at_cap']:.2g}: "
                "the truncated optimum is not the network's (it may keep a class full so that "
                f"its arrivals are lost); raise the caps, or {charge} (--loss-cost)"
            )
        print(f"run the optimal policy: --policy table:{out / 'optimal_table.npz'}")
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if interrupted:
        print("interrupted: the rows above are the policies evaluated so far", file=sys.stderr)
        return 130
    return 0


def solution_row(sol: mdp.Solution, optimal: float) -> dict[str, Any]:
    """One row of the report: the policy, its cost, bounds and gap to the optimal cost, and
    from its stationary distribution the probability of some class at its cap and the
    average cost again."""
    pi = mdp.stationary(sol)
    return {
        "policy": sol.policy,
        "cost": sol.cost,
        "lower": sol.lower,
        "upper": sol.upper,
        "vs_optimal": sol.cost / optimal - 1.0,
        "sweeps": sol.iterations,
        "converged": sol.converged,
        "seconds": sol.seconds,
        "at_cap": mdp.at_cap(sol.model, pi),
        "stationary_cost": mdp.mean_cost(sol.model, pi),
    }


ROW_HEADERS = ["policy", "cost/s [bounds]", "vs optimal", "at a cap", "sweeps", "s"]
"""The headers of :func:`row_cells`."""


def row_cells(r: dict[str, Any]) -> list[str]:
    """The cells of one :func:`solution_row` in a table (headers :data:`ROW_HEADERS`)."""
    return [
        r["policy"],
        f"{fmt(r['cost'], 4)} [{fmt(r['lower'], 4)}, {fmt(r['upper'], 4)}]",
        f"{100 * r['vs_optimal']:+.2f}%",
        f"{r['at_cap']:.1e}",
        f"{r['sweeps']}{'' if r['converged'] else ' (not converged)'}",
        f"{r['seconds']:.1f}",
    ]


def table(rows: list[dict[str, Any]]) -> str:
    """The report as a table (best policy first after the optimal one)."""
    first, rest = rows[:1], sorted(rows[1:], key=lambda r: r["cost"])
    return format_table(ROW_HEADERS, [row_cells(r) for r in first + rest])
