"""Reporting of a sweep grid (:mod:`policyopt.grid`): the summary table over seeds and the
figure of the number in system against the load.

Units as in the rows (:data:`policyopt.grid.ROW_FIELDS`): loads x capacity, rates and
throughput requests/s, latencies s, the number in system in requests (one engine) or jobs (a
network).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from policyopt.report import fmt, fmt_load, format_table, save_figure

SWEEP_FILES: tuple[str, ...] = ("sweep.csv", "sweep.json", "sweep.png")
"""What ``policyopt sweep`` writes into its folder."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "config",
    "policy",
    "load\nx capacity",
    "seeds",
    "verdicts\nstable/unstable/inc.",
    "throughput\n/ rate",
    "mean in\nsystem",
    "latency\nmean s",
)


def _number(value: Any) -> float:
    """A cell of a row as a float (``''`` and ``None``: NaN)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per ``(config, policy, load)`` in the rows' order: the seeds, the verdict
    counts and the means over seeds."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r["config"]), str(r["policy"]), float(r["load"])), []).append(r)
    out = []
    for (config, policy, load), rs in groups.items():
        verdicts = [str(r["verdict"]) for r in rs]
        out.append(
            {
                "config": config,
                "policy": policy,
                "load": load,
                "seeds": len(rs),
                "stable": verdicts.count("stable"),
                "unstable": verdicts.count("unstable"),
                "inconclusive": verdicts.count("inconclusive"),
                "throughput_over_rate": _mean(
                    [_number(r["throughput"]) / _number(r["rate"]) for r in rs]
                ),
                "mean_in_system": _mean([_number(r["mean_in_system"]) for r in rs]),
                "latency_mean_s": _mean([_number(r["latency_mean_s"]) for r in rs]),
            }
        )
    return out


def summary_table(summary: Sequence[dict[str, Any]]) -> str:
    """The summary (:func:`summarize`) as a text table (:func:`format_table`)."""
    body = [
        [
            s["config"],
            s["policy"],
            fmt_load(s["load"]),
            str(s["seeds"]),
            f"{s['stable']}/{s['unstable']}/{s['inconclusive']}",
            fmt(s["throughput_over_rate"], 3),
            fmt(s["mean_in_system"]),
            fmt(s["latency_mean_s"]),
        ]
        for s in summary
    ]
    return format_table(SUMMARY_COLUMNS, body, align="llrrlrrr")


def plot_grid(summary: Sequence[dict[str, Any]], path: Path) -> Path:
    """The mean number in system (over seeds) against the load, a panel per config and a
    line per scheduler or policy; a red cross marks a load where some seed was unstable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(s["config"] for s in summary))
    fig, axes = plt.subplots(
        1, len(configs), figsize=(5 * len(configs), 4), squeeze=False, sharey=False
    )
    for ax, config in zip(axes[0], configs, strict=True):
        mine = [s for s in summary if s["config"] == config]
        for policy in dict.fromkeys(s["policy"] for s in mine):
            pts = sorted((s for s in mine if s["policy"] == policy), key=lambda s: s["load"])
            x = [s["load"] for s in pts]
            y = [s["mean_in_system"] for s in pts]
            ax.plot(x, y, marker="o", label=policy)
            bad = [(s["load"], s["mean_in_system"]) for s in pts if s["unstable"]]
            if bad:
                ax.plot(*zip(*bad, strict=True), "x", color="tab:red", markersize=10)
        ax.set_yscale("log")
        ax.set_xlabel("load (x capacity)")
        ax.set_ylabel("mean in system")
        ax.set_title(config)
        ax.legend(fontsize=8)
    return save_figure(fig, path)
