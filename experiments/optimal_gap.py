"""How much better than the best static priority can any policy be? The optimal cost of the
criss-cross network (balanced heavy traffic), the Lu-Kumar and the classic Rybko-Stolyar
networks, by value iteration on the truncated network (``docs/optimal.md``), against every
static priority; and of the extended six-class network, whose caps cannot be made wide enough,
with each lost arrival charged, against its best static priority.

Part 1 (value iteration): for each case (network, caps, loss cost) the optimal cost with its
bounds, the static priorities, maximum pressure and MaxWeight (re-deciding at every event),
the gap ``policy / optimal - 1``, the stationary probability of sitting at a cap, sweeps and
seconds. The criss-cross rows at growing caps show the truncated optimum rising towards Dai
and Gluzman's published 15.228 and the continuing priority towards its exact 18.

Part 2 (simulation, the network itself): the optimal table of the widest caps run as a policy
(counts above a cap read at the cap) against the best priority of part 1 and maximum pressure
on the same seeds (common random numbers; the test seeds and horizon of
``experiments/tune_networks.py``), mean holding cost per second with a 95% interval over the
seeds and the paired difference to the priority.

Every finished row is appended to ``experiments/out/optimal_gap/rows.jsonl`` at once and
skipped on a rerun (interrupt and rerun to resume). Writes
``experiments/results/optimal_gap.md``, ``.csv`` and ``.json``.

    python experiments/optimal_gap.py            # the recorded run (about 70 minutes on 2 cores)
    python experiments/optimal_gap.py --quick    # small caps, short runs (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from policyopt.cli_optimal import ROW_HEADERS, row_cells, solution_row
from policyopt.jsonout import write_json
from policyopt.model.networks_library import resolve_network
from policyopt.optimal_policy import TablePolicy, evaluate_policy
from policyopt.report import fmt, format_markdown, format_table, write_csv
from policyopt.sim.network_sim import NetworkSimulator
from policyopt.sim.stats import t_interval
from policyopt.solvers import mdp

HERE = Path(__file__).resolve().parent


class Case(NamedTuple):
    """One value-iteration case: the network truncated at ``caps``, each lost arrival charged
    ``loss_cost``; ``priorities``: the static priorities evaluated (``None``: every one);
    ``designed``: the designed policies evaluated."""

    network: str
    caps: list[int]
    loss_cost: float = 0.0
    priorities: list[str] | None = None
    designed: tuple[str, ...] = ("max-pressure", "max-weight")  # re-deciding at every event

    @property
    def key(self) -> str:
        """The case's key in the kept rows (the loss cost only when it is charged)."""
        key = f"{self.network}|{','.join(map(str, self.caps))}"
        return key + (f"|loss {self.loss_cost:g}" if self.loss_cost else "")


SIX_CLASS_PRIORITIES = ["priority:c6>c2>c3>c5>c4>c1"]
"""The six-class network's static priorities evaluated: the best on the network itself
(``experiments/results/tune_networks.md``). Its caps are narrow on the light classes, where
this priority keeps few jobs; the c-mu rule and maximum pressure keep more there (c-mu 7.5
jobs in ``c5``, maximum pressure 1.8 in ``c2``, on the network), so the truncated chain
blocks them at those caps and loses their arrivals: their rows would measure the truncation,
not the policy (both are stable on the network, about 15.1 and 14.5 jobs)."""
CASES: list[Case] = [
    Case("criss-cross", [40, 40, 40]),
    Case("criss-cross", [60, 60, 60]),
    Case("criss-cross", [80, 80, 80]),
    Case("lu-kumar", [20, 20, 20, 20]),
    Case("classic-rybko-stolyar", [20, 20, 20, 20]),
    Case("extended-six-class-2", [25, 3, 8, 25, 6, 3], 2000.0, SIX_CLASS_PRIORITIES, ()),
]
"""The cases; those of a network come by growing caps (part 2 uses the last). The six-class
network needs wide caps on every class, more than fit: at the caps that do, each lost arrival
is charged 2,000 (about the extra holding cost an arrival brings at load 0.9), so that the
optimizer does not keep a class full to lose its arrivals."""
QUICK_CASES: list[Case] = [
    Case("criss-cross", [12, 12, 12]),
    Case("lu-kumar", [6, 6, 6, 6]),
    Case("extended-six-class-2", [4, 2, 3, 4, 2, 2], 200.0, SIX_CLASS_PRIORITIES, ()),
]
MAX_SWEEPS = 30_000
"""Sweeps at most for a policy other than the optimal one (an unstable priority pinned at the
caps narrows its bounds very slowly; it is reported as not converged)."""
HORIZON = 10_000.0
"""Simulated seconds per run in part 2 (as in ``experiments/tune_networks.py``)."""
TEST_SEEDS = (200, 201, 202, 203)


def solve_case(
    case: Case, tol: float, done: dict[str, dict[str, Any]], log: Path
) -> tuple[list[dict[str, Any]], mdp.Solution]:
    """The value-iteration rows of one case (kept in ``log`` as they finish)."""
    name, caps = case.network, case.caps
    net = resolve_network(name)
    model = mdp.chain_model(net, caps, case.loss_cost)
    key = case.key
    table = log.parent / f"{key.replace('|', '_').replace(',', '-').replace(' ', '-')}.npy"
    kept = done.get(f"{key}|optimal")
    if kept is not None and table.exists():  # resumed: the optimal actions were saved
        best = mdp.Solution(
            model, "optimal", kept["lower"], kept["upper"], kept["sweeps"],
            kept["converged"], kept["seconds"], np.zeros(0), np.load(table),
        )  # fmt: skip
    else:
        best = mdp.solve(model, tol=tol)
        np.save(table, best.actions)
    rows = []
    orders = case.priorities
    if orders is None:
        orders = ["priority:" + ">".join(order) for order in mdp.priority_orders(model)]
    for policy in ["optimal", *orders, *case.designed]:
        if f"{key}|{policy}" in done:
            rows.append({**done[f"{key}|{policy}"], "loss_cost": case.loss_cost})
            continue
        if policy == "optimal":
            sol = best
        elif policy.startswith("priority:"):
            order = policy.split(":", 1)[1].split(">")
            sol = mdp.evaluate(model, order, tol=tol, max_sweeps=MAX_SWEEPS)
        else:
            sol = evaluate_policy(net, policy, model, tol=tol, max_sweeps=MAX_SWEEPS)
        row = {"network": name, "caps": ",".join(map(str, caps)), "states": model.n_states}
        row |= solution_row(sol, best.cost)
        row["loss_cost"] = case.loss_cost
        rows.append(row)
        with log.open("a") as f:
            f.write(json.dumps({"key": f"{key}|{policy}", "row": row}) + "\n")
        print(f"{name} caps {row['caps']}: {policy} {row['cost']:.4f}", flush=True)
    return rows, best


def simulate(name: str, table: mdp.Solution, prio: str, horizon: float) -> list[dict[str, Any]]:
    """Part 2 on ``name``: the optimal table, the best priority ``prio`` and maximum pressure
    on the test seeds."""
    net = resolve_network(name)
    policies: dict[str, Any] = {
        f"optimal table (caps {','.join(map(str, table.model.caps))})": TablePolicy(table),
        prio: prio,
        "max-pressure": "max-pressure",
    }
    costs: dict[str, np.ndarray] = {}
    for label, policy in policies.items():
        costs[label] = np.array(
            [
                NetworkSimulator(net, policy, horizon=horizon, seed=s)
                .run(keep_jobs=False)
                .result()
                .holding_cost
                for s in TEST_SEEDS
            ]
        )
    rows = []
    for label, c in costs.items():
        mean, lo, hi = t_interval(c)
        d, dlo, dhi = t_interval(c - costs[prio])
        rows.append(
            {
                "network": name,
                "policy": label,
                "mean": mean,
                "low": lo,
                "high": hi,
                "vs_priority": d,
                "vs_priority_low": dlo,
                "vs_priority_high": dhi,
                "vs_priority_pct": d / float(costs[prio].mean()),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run both parts and write the files; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small caps, short runs")
    parser.add_argument("--tol", type=float, default=1e-4, help="relative width of the bounds")
    parser.add_argument("--out", default=str(HERE / "out" / "optimal_gap"), help="rows kept here")
    parser.add_argument("--results", default=str(HERE / "results"), help="output folder")
    args = parser.parse_args(argv)
    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / ("rows_quick.jsonl" if args.quick else "rows.jsonl")
    done: dict[str, dict[str, Any]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[rec["key"]] = rec["row"]
    vi_rows: list[dict[str, Any]] = []
    widest: dict[str, mdp.Solution] = {}
    for case in QUICK_CASES if args.quick else CASES:
        rows, best = solve_case(case, args.tol, done, log)
        vi_rows += rows
        widest[case.network] = best  # the cases of a network come by growing caps
    sim_rows: list[dict[str, Any]] = []
    for name, table in widest.items():
        caps = ",".join(map(str, table.model.caps))
        ranked = sorted(
            (r for r in vi_rows if r["network"] == name and r["caps"] == caps),
            key=lambda r: (not r["converged"], r["cost"]),
        )
        prio = next(r["policy"] for r in ranked if r["policy"].startswith("priority:"))
        sim_rows += simulate(name, table, prio, HORIZON / (20 if args.quick else 1))
    wall = time.monotonic() - started
    vi_headers = ["network", "caps", "loss cost", "states", *ROW_HEADERS]
    vi_cells = [
        [r["network"], r["caps"], f"{r['loss_cost']:g}", f"{r['states']:,}", *row_cells(r)]
        for r in vi_rows
    ]
    sim_headers = ["network", "policy", "cost/s [95% CI]", "vs priority [95% CI]", "vs priority"]
    sim_cells = [
        [
            r["network"],
            r["policy"],
            f"{fmt(r['mean'], 2)} [{fmt(r['low'], 2)}, {fmt(r['high'], 2)}]",
            f"{fmt(r['vs_priority'], 2)} [{fmt(r['vs_priority_low'], 2)}, "
            f"{fmt(r['vs_priority_high'], 2)}]",
            f"{100 * r['vs_priority_pct']:+.1f}%",
        ]
        for r in sim_rows
    ]
    print(format_table(vi_headers, vi_cells))
    print()
    print(format_table(sim_headers, sim_cells))
    results = Path(args.results)
    suffix = "_quick" if args.quick else ""
    written = [
        write_csv(results / f"optimal_gap{suffix}.csv", vi_rows),
        write_csv(results / f"optimal_gap_simulated{suffix}.csv", sim_rows),
        write_json(
            results / f"optimal_gap{suffix}.json",
            {"value_iteration": vi_rows, "simulated": sim_rows, "wall_s": wall},
        ),
    ]
    md = results / f"optimal_gap{suffix}.md"
    md.write_text(
        "# The optimal policy against the best static priority\n\n"
        "Made by `experiments/optimal_gap.py`"
        f"{' --quick' if args.quick else ''} on 2 cores: the value iterations take "
        f"{sum(r['seconds'] for r in vi_rows) / 60:.0f} min in all (the last run took "
        f"{wall / 60:.0f} min, reusing the rows of earlier runs). A row `not converged` is "
        "an unstable policy pinned at the caps: its bounds stay apart.\n\n"
        "## Value iteration on the truncated network\n\n"
        + format_markdown(vi_headers, vi_cells)
        + f"\n\n## Simulated on the network itself (test seeds {TEST_SEEDS[0]}-"
        f"{TEST_SEEDS[-1]})\n\n" + format_markdown(sim_headers, sim_cells) + "\n"
    )
    written.append(md)
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
