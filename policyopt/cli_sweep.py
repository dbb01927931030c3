"""``policyopt sweep SPEC.yaml``: a grid of runs from a spec (:mod:`policyopt.grid`), on this
machine or on Ray, streamed to ``sweep.csv`` and resumed by a rerun.

Writes into ``--out`` (default ``policyopt-results/sweep-STEM``, STEM the spec file's name):
``sweep.csv`` (a row per cell, appended as cells finish, rewritten in plan order at the
end), ``sweep.json`` (the spec, counts, the summary over seeds, failures) and ``sweep.png``.
A rerun with the same ``--out`` runs only the cells missing from ``sweep.csv``;
``--overwrite`` starts again.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from tqdm import tqdm

from policyopt.grid import (
    Cell,
    GridInterrupted,
    load_sweep_spec,
    plan_cells,
    read_rows,
    row_key,
    run_grid,
)
from policyopt.grid_report import SWEEP_FILES, plot_grid, summarize, summary_table
from policyopt.jsonout import to_json, write_json
from policyopt.outdir import explicit_out
from policyopt.sim.run import check_run_size, expected_requests, scenario_requests
from policyopt.sweep import make_backend

DEFAULT_SWEEP_OUT = Path("policyopt-results")
"""``sweep`` writes to ``policyopt-results/sweep-STEM`` without ``--out``."""


def _requests(cell: Cell) -> float:
    """Expected arrivals of a cell (rates x horizon)."""
    if cell.scenario is not None:
        return scenario_requests(cell.scenario)
    assert cell.network is not None
    return expected_requests(cell.network.net.workflow_rates().values(), cell.horizon_s)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Plan the grid, run the missing cells, then print and write the summary."""
    spec_path = Path(args.spec)
    spec = load_sweep_spec(spec_path)
    backend = make_backend(args.backend, args.jobs, args.ray_address)
    cells = plan_cells(spec, spec_path.parent)
    check_run_size(
        math.fsum(_requests(c) for c in cells),
        f"{len(cells)} cells (rates x horizons, summed)",
        force=args.force,
    )
    out = Path(args.out) if args.out else DEFAULT_SWEEP_OUT / f"sweep-{spec_path.stem}"
    out = explicit_out(out, SWEEP_FILES if args.overwrite else (), overwrite=args.overwrite)
    csv_path = out / "sweep.csv"
    found = {row_key(r) for r in read_rows(csv_path)}
    already = sum(c.key in found for c in cells)
    print(
        f"{len(cells)} cells; {already} already in {csv_path}; running {len(cells) - already} "
        f"({backend.describe()})",
        file=sys.stderr if args.json else sys.stdout,
        flush=True,
    )

    def failed(cell: Cell, error: str) -> None:
        tqdm.write(
            f"policyopt: warning: cell {cell.key} failed: {error}",
            file=sys.stderr,
        )

    code = 0
    try:
        outcome = run_grid(
            cells, csv_path, backend=backend, progress=not args.no_progress, on_error=failed
        )
    except GridInterrupted as stop:
        outcome, code = stop.outcome, 130
    if code == 0 and outcome.failures:
        code = 1
    summary = summarize(outcome.rows)
    doc = {
        "spec": spec.model_dump(mode="json"),
        "cells": len(cells),
        "ran": outcome.ran,
        "skipped": outcome.skipped,
        "complete": outcome.complete,
        "summary": summary,
        "failures": [
            {"config": c.config, "load": c.load, "policy": c.policy, "seed": c.seed, "error": e}
            for c, e in outcome.failures
        ],
    }
    written = [write_json(out / "sweep.json", doc)]
    if outcome.rows:
        written.insert(0, csv_path)
        written.append(plot_grid(summary, out / "sweep.png"))
    if args.json:
        print(to_json(doc))
    else:
        print(summary_table(summary))
    info = sys.stderr
    for c, e in outcome.failures:
        print(f"failed: {c.key}: {e}", file=info)
    for path in written:
        print(f"wrote {path}", file=info)
    if code == 130:
        print(
            f"policyopt: interrupted after {outcome.ran} of {len(cells) - outcome.skipped} "
            f"cells; kept them in {csv_path} (run again to resume)",
            file=info,
        )
    return code


SWEEP_EPILOG = """\
examples:
  policyopt sweep examples/sweep.yaml                       # here, one process
  policyopt sweep examples/sweep.yaml --jobs 2 --out results/grid
  policyopt sweep examples/sweep.yaml --backend ray         # a local Ray instance
  policyopt sweep examples/sweep.yaml --backend ray --ray-address 10.0.0.5:6379

SPEC.yaml (unknown keys are refused; every list non-empty, loads > 0):
  configs: [default, examples/scenario.yaml, rybko-stolyar]
  loads: [0.8, 0.9]              # x lambda* (one engine), x theta* (a network)
  schedulers: [vllm, sarathi]    # one-engine configs (default: each config's own)
  policies: [fcfs, max-pressure] # networks (default fcfs)
  seeds: [0, 1]
  horizon_s: 1800                # default: the scenario's run.horizon_s; networks 7200

A cell is (config, load, scheduler or policy, seed). Rows stream to sweep.csv as cells
finish; a rerun with the same --out runs only the cells the file lacks (a killed sweep
resumes), and the file ends in plan order either way. The workers get specs (validated
scenarios and networks), never files: a Ray cluster needs only policyopt installed on its
nodes (docs/sweeps.md).
"""
