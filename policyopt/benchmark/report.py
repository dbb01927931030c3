"""The benchmark's outputs: a text table, CSV rows, a JSON document and a figure.

One row per :class:`~policyopt.benchmark.runner.Cell` (instance and policy over its seeds);
the per-run rows go to ``runs.csv``; the JSON document holds both, the settings, and every
reference with its source and assumptions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from policyopt.benchmark.instances import Instance, Reference
from policyopt.benchmark.runner import Cell, RunOutcome
from policyopt.jsonout import json_ready
from policyopt.report import format_table

COLUMNS = (
    "instance",
    "policy",
    "seeds",
    "mean jobs [95% CI]",
    "reference",
    "in CI",
    "optimum",
    "vs optimum",
    "verdict",
    "Little gap",
)
"""Headers of the benchmark table."""


def _ref_text(ref: Reference | None) -> str:
    return "" if ref is None else f"{ref.value:.4g} ({ref.kind})"


def table(cells: Sequence[Cell]) -> str:
    """The cells as a left-aligned text table."""
    body = []
    for c in cells:
        inside = c.inside
        gap = c.gap
        body.append(
            [
                c.instance,
                c.policy,
                str(len(c.seeds)),
                f"{c.mean:.3f} [{c.low:.3f}, {c.high:.3f}]",
                _ref_text(c.reference),
                "" if inside is None else ("yes" if inside else "NO"),
                "" if c.optimum is None else f"{c.optimum.value:.4g}",
                "" if gap is None else f"{gap:+.1%}",
                c.verdict,
                f"{c.little_gap:.2%}" if math.isfinite(c.little_gap) else "",
            ]
        )
    return format_table(COLUMNS, body, align="l" * len(COLUMNS))


def cell_row(c: Cell) -> dict[str, Any]:
    """One CSV/JSON row of a cell (numbers unrounded; references with their kind)."""
    ref, opt = c.reference, c.optimum
    return {
        "instance": c.instance,
        "policy": c.policy,
        "seeds": len(c.seeds),
        "mean_jobs": c.mean,
        "mean_jobs_low": c.low,
        "mean_jobs_high": c.high,
        "reference": "" if ref is None else ref.value,
        "reference_kind": "" if ref is None else ref.kind,
        "reference_in_ci": "" if c.inside is None else c.inside,
        "optimum": "" if opt is None else opt.value,
        "gap_to_optimum": "" if c.gap is None else c.gap,
        "verdict": c.verdict,
        "unstable_seeds": sum(v == "unstable" for v in c.verdicts),
        "little_gap_max": c.little_gap,
        "cpu_s": c.cpu_s,
    }


def run_row(o: RunOutcome) -> dict[str, Any]:
    """One row of ``runs.csv``: a run's mean jobs and interval, verdict, Little's law gap,
    class visits, wall and CPU time."""
    return {
        "instance": o.run.instance,
        "policy": o.run.policy,
        "seed": o.run.seed,
        "horizon": o.run.horizon,
        "mean_jobs": o.mean_jobs,
        "mean_jobs_low": o.low,
        "mean_jobs_high": o.high,
        "verdict": o.verdict,
        "little_gap": o.little_gap,
        "jobs": o.jobs,
        "wall_s": o.wall_s,
        "cpu_s": o.cpu_s,
    }


def document(
    cells: Sequence[Cell],
    outcomes: Sequence[RunOutcome],
    instances: dict[str, Instance],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The JSON document: settings, cells, runs, and each instance's references (value,
    kind, source, assumptions) per policy and its optimum."""
    refs = {
        name: {
            "network": inst.network,
            "description": inst.description,
            "optimum": None if inst.optimum is None else asdict(inst.optimum),
            "references": {p: asdict(r) for p, r in inst.references.items()},
        }
        for name, inst in instances.items()
    }
    return json_ready(
        {
            **settings,
            "cells": [cell_row(c) for c in cells],
            "runs": [run_row(o) for o in outcomes],
            "instances": refs,
        }
    )


def plot(cells: Sequence[Cell], path: Path, title: str) -> Path:
    """One panel per instance: each policy's pooled mean (a dot) with its interval, the exact
    or reported reference of a policy as a black marker, the optimum as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(c.instance for c in cells))
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        mine = [c for c in cells if c.instance == name]
        xs = range(len(mine))
        means = [c.mean for c in mine]
        errs = [
            [max(0.0, c.mean - c.low) for c in mine],
            [max(0.0, c.high - c.mean) for c in mine],
        ]
        ax.errorbar(xs, means, yerr=errs, fmt="o", color="tab:blue", capsize=4, ms=5)
        for x, c in zip(xs, mine, strict=True):
            if c.reference is not None:
                marker = "D" if c.reference.kind == "exact" else "s"
                ax.plot([x], [c.reference.value], marker, color="black", ms=5)
        optimum = mine[0].optimum
        if optimum is not None:
            ax.axhline(optimum.value, color="tab:red", ls="--", lw=1)
        ax.set_xticks(list(xs), [c.policy for c in mine], rotation=30, ha="right", fontsize=7)
        ax.set_xlim(-0.5, len(mine) - 0.5)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("mean jobs in system", fontsize=8)
    fig.suptitle(
        f"{title}  (dots: mean with 95% CI; diamond: exact, square: reported; dashed: optimum)",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
