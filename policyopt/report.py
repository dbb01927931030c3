"""Result reporting: plain-text and Markdown tables, CSV and JSON files, PNG figures.

:func:`format_table` is the one plain-text table of the command line (engine and network
commands, ``policyopt evaluate``); JSON goes through :mod:`policyopt.jsonout` (re-exported
here: :func:`to_json`, :func:`write_json`).

Units follow the rest of the toolkit: rates in requests/s, token rates (throughput, backlog
drift) in tokens/s, times (latency, TTFT, horizon) in seconds, batch times in milliseconds,
shares of batches in percent in the tables and as fractions in CSV/JSON.

The compare table (:func:`compare_table`) has one row per ``(scheduler, load)`` run; its
columns are listed in :data:`COMPARE_COLUMNS`. ``-`` marks a value that is not defined, e.g.
the mean latency when no request that arrived after the warm-up finished.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from policyopt.jsonout import json_ready as json_ready  # re-exported: JSON lives there
from policyopt.jsonout import to_json as to_json
from policyopt.jsonout import write_json
from policyopt.model.batch_time import AffineBatchTime, PiecewiseBatchTime, StaircaseBatchTime
from policyopt.model.engine import EngineSpec
from policyopt.sim import BatchRecord, EngineResult

if TYPE_CHECKING:
    from policyopt.compare import Sweep

# ----------------------------------------------------------------------------- numbers


def fmt(x: float | int | None, digits: int | None = None) -> str:
    """A number for a table: ``-`` when missing or not finite.

    With ``digits``, fixed decimals; otherwise about four significant figures without an
    exponent (``4420``, ``26.95``, ``0.1234``).
    """
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return "-"
    if digits is not None:
        return f"{x:.{digits}f}"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:.0f}"
    if ax >= 100:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax == 0:
        return "0"
    return f"{x:.3g}" if ax < 0.001 else f"{x:.4f}"


def fmt_load(x: float) -> str:
    """A load (x lambda*) with two decimals, or more when needed: ``0.90``, ``0.875``."""
    text = f"{x:.4f}".rstrip("0")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return f"{x:.{max(2, decimals)}f}"


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal (``0.873`` -> ``87.3``)."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{100 * x:.1f}"


def _is_number(text: str) -> bool:
    head = text.split(" ", 1)[0]
    try:
        float(head)
    except ValueError:
        return text == "-"
    return True


# ----------------------------------------------------------------------------- tables


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None
) -> str:
    """An aligned plain-text table.

    A header may span several lines (``"latency\nmean s"``). ``align`` has one letter per
    column, ``l`` or ``r``; by default a column is right-aligned when all its cells look like
    numbers. Columns are separated by two spaces and the header is underlined with dashes.
    """
    ncol = len(headers)
    cells = [[str(c) for c in row] for row in rows]
    for row in cells:
        if len(row) != ncol:
            raise ValueError(f"row has {len(row)} cells, the header {ncol}")
    if align is None:
        align = "".join(
            "r" if cells and all(_is_number(row[j]) for row in cells) else "l" for j in range(ncol)
        )
    head = [h.split("\n") for h in headers]
    depth = max((len(h) for h in head), default=1)
    head_rows = [[h[i] if i < len(h) else "" for h in head] for i in range(depth)]
    widths = [max([len(x) for x in head[j]] + [len(row[j]) for row in cells]) for j in range(ncol)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if a == "r" else v.ljust(w)
            for v, w, a in zip(values, widths, align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(h) for h in head_rows]
    out.append("  ".join("-" * w for w in widths))
    out += [line(row) for row in cells]
    return "\n".join(out)


def format_markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned; ``|`` and ``*`` escaped)."""

    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("*", "\\*")

    cells = [[esc(str(c)) for c in row] for row in rows]
    headers = [esc(h.replace("\n", " ")) for h in headers]
    right = [bool(cells) and all(_is_number(row[j]) for row in cells) for j in range(len(headers))]
    out = ["| " + " | ".join(headers) + " |"]
    out.append("| " + " | ".join("---:" if r else "---" for r in right) + " |")
    out += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(out)


def format_pairs(pairs: Sequence[tuple[str, str]]) -> str:
    """``key: value`` lines with the values aligned."""
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{(k + ':').ljust(width + 1)} {v}" for k, v in pairs)


# ----------------------------------------------------------------------------- descriptions


def describe_engine(engine: EngineSpec) -> str:
    """One line: token budget, optional ``k_max`` and the batch-time formula (ms)."""
    bt = engine.batch_time
    if isinstance(bt, StaircaseBatchTime):
        formula = f"staircase t(n) = {bt.c_ms:g} + {bt.a_ms:g} * ceil(n / {bt.b0}) ms"
    elif isinstance(bt, PiecewiseBatchTime):
        formula = f"piecewise t(n) = {bt.c_ms:g} + {bt.a_ms:g} * max(0, n - {bt.b0}) ms"
    elif isinstance(bt, AffineBatchTime):
        formula = (
            f"affine t = {bt.c_ms:g} + {bt.cp_ms:g}*prefill + {bt.cd_ms:g}*decode"
            f" + {bt.ckv_ms:g}*kv ms"
        )
    else:  # pragma: no cover - a new batch-time kind
        formula = type(bt).__name__
    kmax = f", at most {engine.max_seqs} requests per batch" if engine.max_seqs else ""
    return f"token budget b = {engine.token_budget}{kmax}; {formula}"


# ----------------------------------------------------------------------------- compare rows

COMPARE_COLUMNS: tuple[str, ...] = (
    "scheduler",
    "load\nx lambda*",
    "rate\nreq/s",
    "throughput\nreq/s",
    "latency\nmean s",
    "latency\np99 s",
    "TTFT\nmean s",
    "backlog drift\ntokens/s [95% CI]",
    "fluid drift\ntokens/s",
    "verdict",
    "full\nbatches %",
    "non-WC\nbatches %",
)
"""Headers of the compare table, in order (``\\n`` splits a header over two lines)."""


def drift_text(result: EngineResult) -> str:
    """Backlog drift with its 95% interval, tokens/s: ``176.6 [141.4, 211.8]``."""
    lo, hi = result.drift_ci
    return f"{fmt(result.drift, 1)} [{fmt(lo, 1)}, {fmt(hi, 1)}]"


def compare_cells(result: EngineResult) -> list[str]:
    """One compare-table row (strings) for one run; columns as :data:`COMPARE_COLUMNS`."""
    return [
        result.scheduler,
        fmt_load(result.load),
        fmt(result.rate, 2),
        fmt(result.throughput, 2),
        fmt(result.latency_mean),
        fmt(result.latency_p99),
        fmt(result.ttft_mean),
        drift_text(result),
        fmt(result.fluid_drift, 1),
        result.verdict,
        pct(result.full_batch_share),
        pct(result.non_work_conserving_share),
    ]


def compare_table(results: Iterable[EngineResult], markdown: bool = False) -> str:
    """The compare table of ``results``, plain text (or Markdown)."""
    rows = [compare_cells(r) for r in results]
    if markdown:
        return format_markdown(COMPARE_COLUMNS, rows)
    return format_table(COMPARE_COLUMNS, rows, align="l" + "r" * 8 + "l" + "rr")


def sweep_header(sweep: Sweep) -> str:
    """Lines above a compare table: engine, workload, capacity and run settings."""
    cap = sweep.capacity
    run = sweep.base.run
    return "\n".join(
        [
            f"engine: {describe_engine(sweep.base.engine)}",
            f"workload: m_p = {cap.mean_prompt:.2f}, m_d = {cap.mean_output:.2f} tokens "
            f"(m_p + m_d = {cap.mean_tokens:.2f})",
            f"capacity: mu = {cap.mu:.1f} tokens/s, lambda* = mu / (m_p + m_d) = "
            f"{cap.lambda_star:.3f} req/s",
            f"runs: horizon {run.horizon_s:g} s, warm-up {run.warmup:g} s, seed {run.seed} "
            "(same request stream for every scheduler)",
        ]
    )


TABLE_NOTES = (
    "drift: slope of the token backlog over the second half of the run with a 95% "
    "batch-means interval;\n"
    "verdict: unstable if the interval lies above 2% of the offered tokens/s, stable if "
    "below, else inconclusive;\n"
    "fluid drift: max(0, lambda (m_p + m_d) - mu), what a work-conserving scheduler "
    "approaches;\n"
    "latency/TTFT over requests that arrived after the warm-up and finished "
    "('-': none finished)."
)
"""Footnotes printed under a compare table."""


def flat_summary(result: EngineResult) -> dict[str, Any]:
    """``result.summary()`` with each ``[low, high]`` pair split into ``*_low``/``*_high``."""
    out: dict[str, Any] = {}
    for key, value in result.summary().items():
        if isinstance(value, (list, tuple)) and len(value) == 2:
            out[f"{key}_low"], out[f"{key}_high"] = value
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------- files


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


class CsvAppender:
    """Writes dict rows to a CSV file one at a time, flushing after each row.

    The header is taken from the first row; the file is created (replacing an old one) when
    the first row arrives, so an interrupted run leaves the rows written so far. With
    ``append``, a file that exists and has a header is added to instead (the rows must have
    its columns, in its order).
    """

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.append = append
        self._fh: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None
        self.rows = 0

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (missing keys become empty cells, unknown keys are an error)."""
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.append and self.path.exists() and self.path.stat().st_size > 0:
                self._fh = self.path.open("a", newline="")
                self._writer = csv.DictWriter(self._fh, fieldnames=list(row))
            else:
                self._fh = self.path.open("w", newline="")
                self._writer = csv.DictWriter(self._fh, fieldnames=list(row))
                self._writer.writeheader()
        self._writer.writerow({k: _cell(v) for k, v in row.items()})
        assert self._fh is not None
        self._fh.flush()
        self.rows += 1

    def close(self) -> None:
        """Close the file (if any row was written)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write dict rows to ``path`` (header from the first row's keys) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    os.replace(tmp, path)
    return path


def write_series_csv(path: str | Path, result: EngineResult) -> Path:
    """The sampled time series of a run: ``t`` (s), ``n_system``, ``backlog_tokens``,
    ``kv_tokens``."""
    keys = ["t", "n_system", "backlog_tokens", "kv_tokens"]
    cols = [result.series.get(k) for k in keys]
    n = min((len(c) for c in cols if c is not None), default=0)
    rows = [
        {k: (c[i].item() if c is not None else None) for k, c in zip(keys, cols, strict=True)}
        for i in range(n)
    ]
    return write_csv(path, rows) if rows else write_csv(path, [dict.fromkeys(keys)])


def write_batches_csv(path: str | Path, batches: Sequence[BatchRecord]) -> Path:
    """One row per batch: index, start and end (s), token counts, and the composition.

    ``prefill_chunks`` is ``request:tokens`` pairs separated by ``;``, ``decode_ids`` the
    requests that got one decode token each, separated by ``;`` (requests are numbered in
    arrival order from 0).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [
        "batch",
        "start_s",
        "end_s",
        "tokens",
        "prefill_tokens",
        "decode_tokens",
        "prefill_chunks",
        "decode_ids",
    ]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        for i, b in enumerate(batches):
            pre = sum(c for _, c in b.prefill)
            writer.writerow(
                [
                    i,
                    repr(float(b.start)),
                    repr(float(b.end)),
                    pre + len(b.decode),
                    pre,
                    len(b.decode),
                    ";".join(f"{r}:{c}" for r, c in b.prefill),
                    ";".join(str(r) for r in b.decode),
                ]
            )
    return path


# ----------------------------------------------------------------------------- figures


def _time_axis(horizon: float) -> tuple[float, str]:
    """Scale and label for a time axis covering ``horizon`` seconds."""
    if horizon >= 3 * 3600:
        return 3600.0, "simulated time (h)"
    if horizon >= 180:
        return 60.0, "simulated time (min)"
    return 1.0, "simulated time (s)"


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Lay out ``fig``, write it to ``path`` (PNG; folders made as needed) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_n_system(
    results: Sequence[EngineResult], path: str | Path, title: str | None = None
) -> Path:
    """Number of requests in system over time: one panel per load, one line per scheduler.

    The y axis is shared and symmetric-log (linear below 10), so a diverging scheduler and a
    stable one are both readable. Writes a PNG (Agg backend) and returns its path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    loads = sorted({r.load for r in results})
    schedulers = list(dict.fromkeys(r.scheduler for r in results))
    ncols = max(1, min(len(loads), 3 if len(loads) <= 6 or len(loads) == 9 else 4))
    nrows = max(1, math.ceil(len(loads) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(4.2 * ncols, 3.2 * nrows),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    horizon = max((r.horizon for r in results), default=1.0)
    scale, xlabel = _time_axis(horizon)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {s: colors[i % len(colors)] for i, s in enumerate(schedulers)}
    for k, load in enumerate(loads):
        ax = axes[k // ncols][k % ncols]
        for r in results:
            if r.load != load or "t" not in r.series:
                continue
            ax.plot(
                r.series["t"] / scale,
                r.series["n_system"],
                label=r.scheduler,
                color=color[r.scheduler],
                linewidth=1.0,
            )
        rate = next(r.rate for r in results if r.load == load)
        ax.set_title(f"load {load:g} x lambda* ({rate:.2f} req/s)", fontsize=9)
        ax.set_yscale("symlog", linthresh=10)
        ax.grid(True, alpha=0.3)
    for k in range(len(loads), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for row in axes:
        row[0].set_ylabel("requests in system")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
    if title:
        fig.suptitle(title, y=0.005, va="bottom", fontsize=9)
    fig.tight_layout(rect=(0, 0.03 if title else 0, 1, 0.95 if nrows > 1 else 0.9))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- a sweep


def write_compare(sweep: Sweep, out_dir: str | Path, stem: str = "compare") -> list[Path]:
    """Write ``<stem>.csv``, ``<stem>.json`` and ``n_system.png`` of a sweep to ``out_dir``.

    The CSV has one row per finished run (all scalar metrics, intervals split into
    ``*_low``/``*_high``); the JSON has the settings, capacity, runs and failures. The figure
    is skipped when no run finished. Returns the paths written.
    """
    out = Path(out_dir)
    paths: list[Path] = []
    if sweep.results:
        paths.append(write_csv(out / f"{stem}.csv", [flat_summary(r) for r in sweep.results]))
    paths.append(write_json(out / f"{stem}.json", sweep.to_dict()))
    if sweep.results:
        paths.append(plot_n_system(sweep.results, out / "n_system.png", title=figure_title(sweep)))
    return paths


def figure_title(sweep: Sweep) -> str:
    """A one-line caption: engine budget, capacity and run settings."""
    cap = sweep.capacity
    run = sweep.base.run
    return (
        f"b = {sweep.base.engine.token_budget}, mu = {cap.mu:.0f} tokens/s, "
        f"m_p + m_d = {cap.mean_tokens:.0f}, lambda* = {cap.lambda_star:.2f} req/s; "
        f"horizon {run.horizon_s:g} s, seed {run.seed}"
    )


# ----------------------------------------------------------------------------- capacity region


def vertex_name(index: int) -> str:
    """The name of a capacity-region vertex counted counterclockwise from the origin: ``A``
    (the origin), ``B``, ``C``, ... ``Z``, then ``V26``, ``V27``, ..."""
    return chr(ord("A") + index) if 0 <= index < 26 else f"V{index}"


def plot_region(
    regions: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    points: Sequence[tuple[str, float, float]],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Capacity regions in the plane of (prefill, decode) token rates, with points in it.

    ``regions``: ``(label, vertices)`` with the vertices ``(prefill tokens/s, decode
    tokens/s)`` counterclockwise from the origin; each is filled and its vertices are named
    (:func:`vertex_name`; the second region's names carry a prime, ``B'``, the third's two,
    and a vertex shared with an earlier region keeps that region's name).
    ``points``: ``(label, prefill tokens/s, decode tokens/s)``, e.g. a workload's operating
    point and measured throughputs; the first is drawn as a large open star. Writes a PNG
    (Agg backend) and returns its path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    named: list[tuple[float, float]] = []
    scale = max([abs(c) for _, vs in regions for v in vs for c in v] + [1.0])
    for k, (label, vertices) in enumerate(regions):
        xs = [v[0] for v in vertices]
        ys = [v[1] for v in vertices]
        color = colors[k % len(colors)]
        ax.fill(xs, ys, alpha=0.12, color=color)
        ax.plot([*xs, xs[0]], [*ys, ys[0]], color=color, linewidth=1.4, label=label)
        ax.plot(xs, ys, "o", color=color, markersize=4)
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if any(math.hypot(x - a, y - b) <= 1e-9 * scale for a, b in named):
                continue
            named.append((x, y))
            ax.annotate(
                vertex_name(i) + "'" * k,
                (x, y),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
                color=color,
            )
    markers = ["o", "s", "^", "v", "D", "P", "X", "h"]
    for k, (label, x, y) in enumerate(points):
        first = k == 0
        ax.plot(
            x,
            y,
            "*" if first else markers[(k - 1) % len(markers)],
            markersize=18 if first else 6,
            color="black" if first else colors[(k - 1 + len(regions)) % len(colors)],
            markerfacecolor="none" if first else None,
            markeredgewidth=1.2 if first else 1.0,
            linestyle="none",
            label=label,
        )
    ax.set_xlabel("prefill tokens/s")
    ax.set_ylabel("decode tokens/s")
    xmax = max([x for _, vs in regions for x, _ in vs] + [x for _, x, _ in points] + [1.0])
    ymax = max([y for _, vs in regions for _, y in vs] + [y for _, _, y in points] + [1.0])
    ax.set_xlim(0, 1.08 * xmax)
    ax.set_ylim(0, 1.25 * ymax)  # room for the legend above the region
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
