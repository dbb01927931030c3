"""Vertex C of the request-cap capacity region: only Sarathi-Serve at b = 128 carries it.

Li, Dai, Peng (arXiv 2504.07347, v3, Theorem 10) describe the capacity region of an engine
with token budget ``b`` and at most ``max_seqs = 100`` requests per batch (a prefill chunk and
a decode token each take one request slot): the convex hull of the origin and the rates
``(x, y) / t`` of the feasible batches of ``x`` prefill and ``y`` decode tokens. With the
default staircase ``t(n) = 11.28 + 35.47 ceil(n / 128)`` ms and ``b = 128`` every batch takes
46.75 ms and the region's vertices are, counterclockwise from the origin A,

* B = 128 prefill tokens per batch (2738.0 tokens/s of prefill),
* C = 29 prefill + 99 decode tokens per batch (620.3 prefill, 2117.6 decode tokens/s),
* D = 100 decode tokens per batch (2139.0 decode tokens/s).

The workload here is one request of 290 prompt and 990 output tokens every 467.5 ms
(deterministic arrivals and lengths): 620.3 prefill and 2117.6 decode tokens/s, exactly
vertex C (``policyopt capacity examples/vertex_c.yaml --region``: theta = 1). A vertex is a
point that no other mix of batches reaches: an engine carries this workload only if,
in the long run, essentially all its time goes to batches of 29 prefill + 99 decode tokens
(or of the same rates). That is 10 such batches per arrival, every one full. With
``b = 1024`` the region is larger (two more vertices, 1024 prefill tokens and 925 + 99 per
295.04 ms), but C is still a vertex and the operating point still sits on it, so a larger
budget gives no slack: a scheduler must still run C-shaped batches.

Why the schedulers differ (the batch mixes the script measures confirm it):

* **Sarathi-Serve, b = 128**: decode first (the 99 running requests, one slot each), then a
  prefill chunk in the last slot, which fills the budget with 29 tokens: exactly C. After its
  start-up it runs nothing else, so it is stable, with about 100 requests in the system
  (99 decoding, 1 prefilling).
* **Orca, b = 128**: prefill first. A waiting prompt takes the whole budget (128 prefill
  tokens, vertex B), and when no prompt waits the batch is 100 decode tokens (vertex D).
  Time-sharing B and D runs strictly inside the region, below C: the decode backlog grows.
* **FasterTransformer and vLLM, b = 128**: they do not chunk prefill, and a 290-token prompt
  does not fit in 128 tokens: the scenario is refused (the prompts would never run).
* **b = 1024**: vLLM alternates prefill-only batches of whole prompts (290 tokens, 117.69 ms)
  with decode-only batches; Orca and Sarathi-Serve put the whole 290-token prompt into one
  batch with 99 decode tokens (389 tokens, four steps: 153.16 ms), which decodes at less
  than a third of C's rate, and Sarathi's decode first lets 100 decoders hold every slot while
  prompts wait. FasterTransformer batches whole requests. None of them runs C-shaped
  batches, and all are unstable.

The script runs the four schedulers at both budgets, each once (deterministic arrivals and
lengths: the seed does not matter), and writes into ``experiments/results/``:

* ``vertex_c.csv``: the table (numbers), one row per run;
* ``vertex_c.json``: the settings, the regions' vertices and the rows;
* ``vertex_c.md``: the table as Markdown, with the settings and the command that made it;
* ``vertex_c.png``: both regions, the operating point and each run's measured token rates.

Verdict, throughput and mean number in system come from a run of ``--horizon`` simulated
seconds. The batch mix (prefill and decode tokens/s, the share of time in each batch shape,
``theta`` of the measured rates) comes from the second half of a run of ``--mix-horizon`` s
with every batch recorded: the first ``--mix-horizon`` seconds of the same deterministic run.

Usage::

    python experiments/vertex_c.py              # the recorded setting (8 simulated hours)
    python experiments/vertex_c.py --quick      # 600 s runs, a few seconds
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from policyopt.cli import load_config
from policyopt.compare import DEFAULT_SCHEDULERS
from policyopt.errors import SpecError
from policyopt.model import Scenario, build
from policyopt.report import (
    describe_engine,
    fmt,
    format_markdown,
    format_table,
    plot_region,
    vertex_name,
    write_csv,
    write_json,
)
from policyopt.sim import simulate
from policyopt.sim.engine_sim import BatchRecord
from policyopt.solvers.batch_size_region import RegionReport, batch_region, capacity_region
from policyopt.sweep import RunsInterrupted, run_all

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "examples" / "vertex_c.yaml"
BUDGETS = (128, 1024)
"""Token budgets run: the paper's 128, and 1024 (a larger region with C still a vertex)."""

HORIZON_S = 28800.0
"""8 simulated hours per run (about a second of wall time each)."""

MIX_HORIZON_S = 900.0
"""The batch mix is measured over the second half of this many simulated seconds, past
Sarathi-Serve's start-up at b = 128 (which ends at about 330 s)."""

QUICK = (600.0, 300.0)
"""``--quick``: horizon and mix horizon (s)."""

VERTEX_C = (29, 99)
"""Prefill and decode tokens of a vertex-C batch (b = 128, max_seqs = 100)."""

COLUMNS = (
    "b",
    "scheduler",
    "verdict",
    "throughput\nreq/s",
    "mean\njobs",
    "backlog drift\ntokens/s [95% CI]",
    "prefill\ntokens/s",
    "decode\ntokens/s",
    "theta of\nmeasured",
    "vertex-C\nbatches %",
    "batch shapes (prefill + decode\ntokens / batch ms: % of time)",
)
"""Headers of the printed and Markdown tables."""


def shown_path(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it (for the kept results)."""
    full = Path(path).resolve()
    root = HERE.parent
    return str(full.relative_to(root)) if full.is_relative_to(root) else str(path)


def scenario(base: Scenario, budget: int, scheduler: str, horizon: float) -> Scenario:
    """``base`` with another token budget, scheduler and horizon (s), validated again; a
    scheduler that cannot run the workload's prompts raises :class:`SpecError`."""
    engine = {**base.engine.model_dump(), "token_budget": budget}
    return build(
        Scenario,
        {
            "engine": engine,
            "scheduler": scheduler,
            "workload": base.workload,
            "run": {**base.run.model_dump(exclude={"warmup_s"}), "horizon_s": horizon},
        },
    )


def batch_mix(records: list[BatchRecord], start: float, end: float) -> dict[str, Any]:
    """What the batches run entirely within ``[start, end]`` s did: prefill and decode
    tokens/s, the share of the window busy, the share of time in vertex-C batches, and the
    three batch shapes with the most time (``"29+99/46.75: 99.1%"``)."""
    span = end - start
    pre = dec = 0
    busy = c_time = 0.0
    shapes: Counter[tuple[int, int, float]] = Counter()
    for rec in records:
        if rec.start < start or rec.end > end:
            continue
        x = sum(c for _, c in rec.prefill)
        y = len(rec.decode)
        dt = rec.end - rec.start
        pre, dec, busy = pre + x, dec + y, busy + dt
        if (x, y) == VERTEX_C:
            c_time += dt
        shapes[(x, y, round(1000 * dt, 2))] += dt
    top = ", ".join(
        f"{x}+{y}/{ms:g}: {100 * t / span:.1f}%" for (x, y, ms), t in shapes.most_common(3)
    )
    return {
        "prefill_tok_s": pre / span,
        "decode_tok_s": dec / span,
        "busy_share": busy / span,
        "vertex_c_share": c_time / span,
        "batch_shapes": top,
    }


def run_one(task: tuple[str, int, str, float, float]) -> dict[str, Any]:
    """One cell: (config path, budget, scheduler, horizon s, mix horizon s) -> its row."""
    config, budget, scheduler, horizon, mix_horizon = task
    base = load_config(config)
    row: dict[str, Any] = {"budget": budget, "scheduler": scheduler}
    try:
        sc = scenario(base, budget, scheduler, horizon)
    except SpecError as err:
        return {**row, "verdict": "refused", "note": str(err)}
    result = simulate(sc)
    mix_run = simulate(scenario(base, budget, scheduler, mix_horizon), record_batches=True)
    mix = batch_mix(mix_run.batch_records, mix_horizon / 2, mix_horizon)
    theta = batch_region(sc.engine, mix["prefill_tok_s"], mix["decode_tok_s"]).theta
    return {
        **row,
        "verdict": result.verdict,
        "rate_req_s": result.rate,
        "throughput_req_s": result.throughput,
        "mean_jobs": result.mean_in_system,
        "drift_tok_s": result.drift,
        "drift_low_tok_s": result.drift_ci[0],
        "drift_high_tok_s": result.drift_ci[1],
        "drift_threshold_tok_s": result.drift_threshold,
        **mix,
        "theta_measured": theta,
        "note": "",
    }


def table_cells(row: dict[str, Any]) -> list[str]:
    """One table row (strings); a refused run has only its verdict."""
    if row["verdict"] == "refused":
        return [str(row["budget"]), row["scheduler"], "refused", *["-"] * 8]
    drift = (
        f"{fmt(row['drift_tok_s'], 1)} [{fmt(row['drift_low_tok_s'], 1)}, "
        f"{fmt(row['drift_high_tok_s'], 1)}]"
    )
    return [
        str(row["budget"]),
        row["scheduler"],
        row["verdict"],
        fmt(row["throughput_req_s"], 3),
        fmt(row["mean_jobs"], 1),
        drift,
        fmt(row["prefill_tok_s"], 1),
        fmt(row["decode_tok_s"], 1),
        fmt(row["theta_measured"], 3),
        f"{100 * row['vertex_c_share']:.1f}",
        row["batch_shapes"],
    ]


def header_lines(regions: dict[int, RegionReport], horizon: float, mix_horizon: float) -> list[str]:
    """Settings and the operating point's place in each region."""
    first = next(iter(regions.values()))
    lines = [
        f"workload: {first.rate:.4f} req/s (one every {1000 / first.rate:.1f} ms), "
        f"m_p = {first.mean_prompt:g}, m_d = {first.mean_output:g} tokens; operating point "
        f"{first.prefill_rate:.1f} prefill, {first.decode_rate:.1f} decode tokens/s",
    ]
    for budget, region in regions.items():
        verts = ", ".join(
            f"{vertex_name(i)} ({v.prefill_tokens}, {v.decode_tokens})"
            for i, v in enumerate(region.vertices)
        )
        lines.append(f"b = {budget}: theta = {region.theta:.4f}; vertices {verts}")
    lines.append(
        f"runs: {horizon:g} s each (verdict, throughput, mean jobs); batch mix over "
        f"{mix_horizon / 2:g}-{mix_horizon:g} s of a {mix_horizon:g} s run with batch records"
    )
    return lines


def markdown(
    rows: list[dict[str, Any]], header: list[str], engine_line: str, command: str, wall: float
) -> str:
    """``vertex_c.md``: settings, the table and how to regenerate it."""
    settings = "\n".join(f"- {line}" for line in [f"engine: {engine_line}", *header])
    return (
        "# Vertex C: which scheduler carries a workload on a vertex of the capacity region\n\n"
        f"{settings}\n"
        f"- made by `{command}` ({wall:.0f} s wall time)\n\n"
        f"{format_markdown(COLUMNS, [table_cells(r) for r in rows])}\n\n"
        "theta of measured: how far the measured (prefill, decode) token rates could be scaled "
        "and stay in the region (1: on the boundary); vertex-C batches: share of the time in "
        "batches of exactly 29 prefill + 99 decode tokens; refused: the scheduler cannot run a "
        "290-token prompt in a 128-token budget.\n\n"
        "![capacity regions and measured rates](vertex_c.png)\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the eight cells and write the files; returns the exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python experiments/vertex_c.py --quick",
    )
    parser.add_argument(
        "--config", default=str(CONFIG), help="scenario file (default: %(default)s)"
    )
    parser.add_argument(
        "--horizon", type=float, default=HORIZON_S, help="simulated s per run (%(default)g)"
    )
    parser.add_argument(
        "--mix-horizon",
        type=float,
        default=MIX_HORIZON_S,
        help="simulated s of the batch-recording run; the mix is its second half (%(default)g)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"short runs: --horizon {QUICK[0]:g} --mix-horizon {QUICK[1]:g}",
    )
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (1)")
    parser.add_argument(
        "--results", default=str(HERE / "results"), help="kept results (%(default)s)"
    )
    args = parser.parse_args(argv)
    horizon, mix_horizon = QUICK if args.quick else (args.horizon, args.mix_horizon)
    try:
        base = load_config(args.config)
    except SpecError as err:
        print(f"vertex_c: error: {err}", file=sys.stderr)
        return 2
    regions = {
        b: capacity_region(base.engine.model_copy(update={"token_budget": b}), base.workload)
        for b in BUDGETS
    }
    plan = [(args.config, b, s, horizon, mix_horizon) for b in BUDGETS for s in DEFAULT_SCHEDULERS]
    started = time.monotonic()

    def log(index: int, row: dict[str, Any]) -> None:
        """Without a terminal (no progress bar), one line per finished run on stderr."""
        if not sys.stderr.isatty():
            print(
                f"[{index + 1}/{len(plan)}] b = {row['budget']} {row['scheduler']}: "
                f"{row['verdict']} ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    try:
        outcome = run_all(
            plan,
            run_one,
            jobs=args.jobs,
            desc="vertex C",
            label=lambda task: f"b = {task[1]} {task[2]}",
            on_result=log,
        )
    except RunsInterrupted:
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    for i, error in outcome.errors.items():
        print(f"failed: b = {plan[i][1]} {plan[i][2]}: {error}", file=sys.stderr)
    if outcome.errors:
        return 1
    wall = time.monotonic() - started
    rows = list(outcome.results.values())

    results = Path(args.results)
    header = header_lines(regions, horizon, mix_horizon)
    engine_line = describe_engine(base.engine).replace(
        f"b = {base.engine.token_budget}", "b = " + " and ".join(str(b) for b in BUDGETS)
    )
    command = "python experiments/vertex_c.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    written = [
        write_csv(results / "vertex_c.csv", rows),
        write_json(
            results / "vertex_c.json",
            {
                "settings": {
                    "config": shown_path(args.config),
                    "horizon_s": horizon,
                    "mix_horizon_s": mix_horizon,
                    "engine": base.engine.model_dump(mode="json"),
                    "workload": base.workload.model_dump(mode="json"),
                },
                "regions": {str(b): r for b, r in regions.items()},
                "runs": rows,
            },
        ),
    ]
    md = results / "vertex_c.md"
    md.write_text(markdown(rows, header, engine_line, command.strip(), wall))
    written.append(md)
    points = [
        ("operating point", regions[BUDGETS[0]].prefill_rate, regions[BUDGETS[0]].decode_rate)
    ]
    points += [
        (f"{r['scheduler']}, b = {r['budget']}", r["prefill_tok_s"], r["decode_tok_s"])
        for r in rows
        if r["verdict"] != "refused"
    ]
    written.append(
        plot_region(
            [
                (f"region, b = {b}", [(v.prefill_rate, v.decode_rate) for v in r.vertices])
                for b, r in regions.items()
            ],
            points,
            results / "vertex_c.png",
            title=f"max_seqs = {base.engine.max_seqs}: measured token rates over "
            f"{mix_horizon / 2:g}-{mix_horizon:g} s",
        )
    )

    print(f"engine: {engine_line}")
    print("\n".join(header))
    print()
    print(format_table(COLUMNS, [table_cells(r) for r in rows], align="rll" + "r" * 7 + "l"))
    for r in rows:
        if r["verdict"] == "refused":
            print(f"refused: b = {r['budget']} {r['scheduler']}: {r['note']}")
    print(f"\n{len(rows)} runs in {wall:.0f} s wall time")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
