"""Reporting of a boundary search (:mod:`policyopt.boundary`): the table of points, the
interval and the share of capacity in words, the figure, and the files of ``--out``.

Units: loads are multiples of the capacity (``lambda*`` or ``theta*``), rates requests/s,
horizons simulated seconds, drift and threshold tokens/s (one engine) or jobs/s (a
network), wall times seconds.
"""

from __future__ import annotations

from pathlib import Path

from policyopt.boundary import BoundarySearch, Point
from policyopt.jsonout import write_json
from policyopt.report import fmt, fmt_load, format_table, save_figure, write_csv

BOUNDARY_FILES: tuple[str, ...] = ("boundary.csv", "boundary.json", "boundary.png")
"""What ``boundary --out DIR`` writes: the points, the whole search, the figure."""

STATUS_COLOURS = {
    "stable": "tab:green",
    "unstable": "tab:red",
    "inconclusive": "tab:gray",
    "above capacity": "tab:orange",
    "unfinished": "tab:purple",
}


def _status_text(point: Point) -> str:
    return "stable, above capacity" if point.status == "above capacity" else point.status


def points_table(search: BoundarySearch) -> str:
    """Every point judged, in the order judged (:func:`~policyopt.report.format_table`)."""
    unit = "tokens/s" if search.capacity_name == "lambda*" else "jobs/s"
    headers = [
        "#",
        f"load\nx {search.capacity_name}",
        "rate\nreq/s",
        "horizons\ns",
        f"drift {unit}\n[95% CI]",
        f"threshold\n{unit}",
        "verdict",
        "wall\ns",
    ]
    rows = []
    for i, p in enumerate(search.points):
        last = p.trials[-1] if p.trials else None
        drift = (
            f"{fmt(last.drift, 2)} [{fmt(last.drift_low, 2)}, {fmt(last.drift_high, 2)}]"
            if last
            else "-"
        )
        rows.append(
            [
                str(i + 1),
                fmt_load(p.load),
                fmt(p.rate, 3),
                ",".join(f"{t.horizon_s:g}" for t in p.trials) or "-",
                drift,
                fmt(last.threshold, 2) if last else "-",
                _status_text(p),
                f"{p.wall_s:.2f}",
            ]
        )
    return format_table(headers, rows, align="rrrlllll")


def capacity_words(search: BoundarySearch) -> str:
    """The capacity and where it comes from."""
    if search.capacity_name == "lambda*":
        return f"lambda* = {search.capacity:.4g} req/s, the closed form mu / (m_p + m_d)"
    return (
        f"theta* = {search.capacity:.4g} of the static planning LP, load 1 = "
        f"{search.capacity_rate:.4g} req/s over the workflows"
    )


def header_lines(search: BoundarySearch) -> list[str]:
    """What was searched, the capacity and the settings, in words."""
    s = search.settings
    return [
        f"boundary of {search.target}",
        f"capacity: {capacity_words(search)}",
        f"search: loads {s.low:g} (halved while not stable) to {s.high:g} x "
        f"{search.capacity_name}, until the width is at most {s.tol:g} x the upper end; "
        f"horizons {s.horizon_s:g} s doubling up to {s.max_horizon_s:g} s; seed {s.seed}",
    ]


def result_lines(search: BoundarySearch) -> list[str]:
    """The interval, the share of capacity kept and why the search stopped, in words."""
    name, lo, hi = search.capacity_name, search.lower, search.upper
    rate = search.capacity_rate
    lines = []
    if lo is not None and hi is not None:
        what = {
            "unstable": "unstable",
            "inconclusive": "inconclusive at the largest horizon (counted as not stable)",
            "above capacity": "above capacity (the drift test's tolerance called it stable)",
        }[search.upper_status or "unstable"]
        lines.append(
            f"boundary: in [{fmt_load(lo)}, {fmt_load(hi)}] x {name} = "
            f"[{lo * rate:.4g}, {hi * rate:.4g}] req/s: stable at {fmt_load(lo)}, "
            f"{what} at {fmt_load(hi)}"
        )
        lines.append(
            f"{search.target} keeps {100 * (lo + hi) / 2:.0f}% of capacity on this workload "
            f"({100 * lo:.1f}% to {100 * hi:.1f}% of {capacity_words(search)})"
        )
    elif lo is None and hi is not None:
        lines.append(
            f"boundary: below {fmt_load(hi)} x {name}: no load judged was stable "
            f"({search.target} keeps less than {100 * hi:.2g}% of capacity; "
            f"{capacity_words(search)})"
        )
    elif lo is not None:
        lines.append(
            f"boundary: above {fmt_load(lo)} x {name}, the largest load judged "
            f"({capacity_words(search)})"
        )
    else:
        lines.append("boundary: no point judged")
    state = "" if search.complete else " (search not finished)"
    lines.append(
        f"stopped: {search.stopped}{state}; {len(search.points)} points, "
        f"{sum(len(p.trials) for p in search.points)} runs, {search.wall_s:.1f} s of simulation"
    )
    return lines


def plot_boundary(search: BoundarySearch, path: Path) -> Path:
    """The drift over its threshold at every point judged, coloured by status, with the
    interval shaded and the capacity marked; a symmetric-log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for status, colour in STATUS_COLOURS.items():
        pts = [p for p in search.points if p.trials and p.status == status]
        if not pts:
            continue
        x = [p.load for p in pts]
        thr = [p.trials[-1].threshold for p in pts]
        y = [p.trials[-1].drift / t for p, t in zip(pts, thr, strict=True)]
        low = [
            (p.trials[-1].drift - p.trials[-1].drift_low) / t for p, t in zip(pts, thr, strict=True)
        ]
        high = [
            (p.trials[-1].drift_high - p.trials[-1].drift) / t
            for p, t in zip(pts, thr, strict=True)
        ]
        ax.errorbar(x, y, yerr=[low, high], fmt="o", color=colour, label=status, capsize=3)
    lo, hi = search.lower, search.upper
    if lo is not None and hi is not None:
        ax.axvspan(lo, hi, color="tab:blue", alpha=0.15, label="boundary interval")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1, label="capacity")
    ax.axhline(1.0, color="tab:red", linestyle=":", linewidth=1, label="threshold")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel(f"load (x {search.capacity_name})")
    ax.set_ylabel("drift / threshold (last horizon)")
    ax.set_title(f"stability boundary: {search.target}")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_boundary(search: BoundarySearch, folder: Path, doc: dict) -> list[Path]:
    """``boundary.csv`` (a row per point), ``boundary.json`` (``doc``: the whole search) and
    ``boundary.png`` into ``folder``; the paths written."""
    written = []
    if search.points:
        written.append(write_csv(folder / "boundary.csv", search.rows()))
    written.append(write_json(folder / "boundary.json", doc))
    if search.points:
        written.append(plot_boundary(search, folder / "boundary.png"))
    return written
