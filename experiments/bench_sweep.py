"""Benchmark: sweep throughput on the local backend (1 and 2 processes) and on a local Ray
instance of 2 workers, and Ray's overhead per cell.

The cells are those of ``policyopt sweep`` (:func:`policyopt.grid.run_cell`): Sarathi on the
paper's engine at 0.9 ``lambda*``, one seed per cell, with a horizon calibrated so that one
cell takes about ``--cell-seconds`` of wall time (default 10 s; a short calibration run at
first). Every backend runs the same ``--cells`` cells (default 6) through the one runner
(:func:`policyopt.sweep.run_all`), one backend after the other, so the ratios come from one
run on one machine:

* throughput: cells per minute of wall time, and the speed-up over one local process;
* the overhead per cell of each backend: ``(wall x workers - busy) / cells`` seconds, where
  ``busy`` is the time spent inside the cells as the workers measured it, and as a share
  of the mean cell: what the runner costs beyond the simulations (dispatch, worker start,
  imports, sending specs and rows, the idle tail). Measured this way it does not move with
  the load other users put on a shared machine, which stretches the cells themselves. The
  Ray instance's start (``ray.init``, seconds) is timed apart.

``--short-cells N`` adds N cells of about 0.2 s on both 2-worker backends: there the
fixed costs (a task's round trip, starting workers and importing policyopt in them)
dominate.
The target is at most 10% overhead per cell on cells of about 10 s.

    python experiments/bench_sweep.py
    python experiments/bench_sweep.py --cells 4 --cell-seconds 5 --short-cells 20 --json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from policyopt.grid import Cell, SweepSpec, plan_cells, run_cell
from policyopt.model import build
from policyopt.report import format_table
from policyopt.sweep import Backend, run_all

CALIBRATION_HORIZON_S = 7200.0
"""Simulated seconds of the calibration run (a fraction of a second of wall time)."""


def cells(count: int, horizon_s: float, first_seed: int = 0) -> list[Cell]:
    """``count`` cells: Sarathi at 0.9 lambda*, seeds ``first_seed`` onwards."""
    spec = build(
        SweepSpec,
        {
            "configs": ["default"],
            "loads": [0.9],
            "schedulers": ["sarathi"],
            "seeds": list(range(first_seed, first_seed + count)),
            "horizon_s": horizon_s,
        },
    )
    return plan_cells(spec)


def horizon_for(seconds: float) -> float:
    """The horizon (simulated s) of a cell taking about ``seconds`` of wall time."""
    (probe,) = cells(1, CALIBRATION_HORIZON_S, first_seed=10_000)
    start = time.perf_counter()
    run_cell(probe)
    per_sim_second = (time.perf_counter() - start) / CALIBRATION_HORIZON_S
    return round(seconds / per_sim_second, -2)


def timed_cell(cell: Cell) -> float:
    """Run one cell; the wall seconds it took inside its worker. (Defined in the script, so
    Ray pickles it by value; the cell itself goes as a spec, as in ``policyopt sweep``.)"""
    start = time.perf_counter()
    run_cell(cell)
    return time.perf_counter() - start


def timed_run(work: Sequence[Cell], backend: Backend) -> dict[str, Any]:
    """Run ``work`` on ``backend`` (every cell must succeed): the wall seconds, the seconds
    inside the cells, and the overhead per cell, ``(wall x workers - busy) / cells``, in
    seconds and as a share of the mean cell."""
    start = time.perf_counter()
    outcome = run_all(work, timed_cell, backend=backend, progress=False)
    wall = time.perf_counter() - start
    if outcome.errors:
        raise RuntimeError(f"cells failed: {outcome.errors}")
    busy = sum(outcome.results.values())
    workers = backend.jobs
    overhead = (wall * workers - busy) / len(work)
    return {
        "backend": backend.kind,
        "workers": workers,
        "wall_s": wall,
        "mean_cell_s": busy / len(work),
        "overhead_per_cell_s": overhead,
        "overhead_share": overhead / (busy / len(work)),
        "cells_per_minute": 60 * len(work) / wall,
    }


def ray_run(work: Sequence[Cell], workers: int) -> tuple[float, dict[str, Any]]:
    """``(seconds to start a local Ray instance, timed_run of the cells on it)``."""
    from policyopt.ray_backend import connect, ray_module

    ray = ray_module()
    start = time.perf_counter()
    connect(None, workers)
    started = time.perf_counter() - start
    try:
        return started, timed_run(work, Backend("ray", workers))
    finally:
        ray.shutdown()


def measure(n_cells: int, cell_seconds: float, short_cells: int) -> dict[str, Any]:
    """Every measurement of the module docstring, as one dict."""
    horizon = horizon_for(cell_seconds)
    work = cells(n_cells, horizon)
    runs = [timed_run(work, Backend("local", 1)), timed_run(work, Backend("local", 2))]
    ray_start, on_ray = ray_run(work, 2)
    runs.append(on_ray)
    for run in runs:
        run["speedup"] = runs[0]["wall_s"] / run["wall_s"]
    out: dict[str, Any] = {"cells": n_cells, "horizon_s": horizon, "runs": runs}
    out["ray_start_s"] = ray_start
    out["ray_extra_overhead_share"] = on_ray["overhead_share"] - runs[1]["overhead_share"]
    out["ray_overhead_share_with_start"] = (
        on_ray["overhead_per_cell_s"] + ray_start * 2 / n_cells
    ) / on_ray["mean_cell_s"]
    if short_cells:
        short = cells(short_cells, round(horizon * 0.2 / cell_seconds, -1), first_seed=1000)
        s_local = timed_run(short, Backend("local", 2))
        _, s_ray = ray_run(short, 2)
        out["short"] = {"cells": short_cells, "local": s_local, "ray": s_ray}
    return out


def report(m: dict[str, Any]) -> str:
    """The measurements as text tables."""

    def rows(runs: Sequence[dict[str, Any]]) -> list[list[str]]:
        return [
            [
                r["backend"],
                str(r["workers"]),
                f"{r['wall_s']:.1f}",
                f"{r['cells_per_minute']:.1f}",
                f"{r['speedup']:.2f}" if "speedup" in r else "-",
                f"{r['mean_cell_s']:.2f}",
                f"{1000 * r['overhead_per_cell_s']:.0f}",
                f"{100 * r['overhead_share']:.1f}",
            ]
            for r in runs
        ]

    heads = [
        "backend",
        "workers",
        "wall s",
        "cells/min",
        "speed-up",
        "mean cell s",
        "overhead\nms/cell",
        "overhead\n% of a cell",
    ]
    ray = m["runs"][-1]
    lines = [
        f"{m['cells']} cells (Sarathi at 0.9 lambda*, horizon {m['horizon_s']:g} s each)",
        "",
        format_table(heads, rows(m["runs"])),
        "",
        f"Ray: overhead {100 * ray['overhead_share']:.1f}% of a cell (target at most 10%), "
        f"{100 * m['ray_extra_overhead_share']:+.1f} points over the local pool; the start of "
        f"the local instance ({m['ray_start_s']:.1f} s) comes before; counted too, spread over "
        f"the cells, {100 * m['ray_overhead_share_with_start']:.1f}%",
    ]
    if "short" in m:
        s = m["short"]
        lines += [
            "",
            f"{s['cells']} short cells, 2 workers:",
            format_table(heads, rows([s["local"], s["ray"]])),
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=6, help="cells per backend (default 6)")
    parser.add_argument(
        "--cell-seconds", type=float, default=10.0, help="wall seconds per cell (default 10)"
    )
    parser.add_argument(
        "--short-cells", type=int, default=20, help="cells of about 0.2 s (default 20; 0: none)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    m = measure(args.cells, args.cell_seconds, args.short_cells)
    print(json.dumps(m, indent=2) if args.json else report(m))


if __name__ == "__main__":
    main()
