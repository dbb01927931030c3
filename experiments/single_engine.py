"""The paper's single-engine experiment: four schedulers over a sweep of loads.

Li, Dai, Peng (arXiv 2504.07347) compare FasterTransformer, vanilla vLLM, Orca and
Sarathi-Serve on one engine (CodeLlama-34B on an A100, token budget 512, prompts/outputs of
129/112 tokens on average): work-conserving Orca and Sarathi-Serve are stable up to the
capacity ``lambda* = mu / (m_p + m_d)``, the other two are not. This script reruns that
comparison with the same code as ``policyopt compare`` and writes

* ``experiments/out/``: ``compare.csv`` (every metric), ``compare.json``, ``n_system.png``
  (working files, not kept in git);
* ``experiments/results/single_engine.csv``: the table (numbers), one row per run;
* ``experiments/results/single_engine.md``: the table as Markdown, with the settings and the
  command that made it;
* ``experiments/results/single_engine_n_system.png``: the number in system over time.

Usage::

    python experiments/single_engine.py                     # the recorded setting
    python experiments/single_engine.py --horizon 3600 --jobs 2
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from policyopt.cli import load_config
from policyopt.compare import DEFAULT_SCHEDULERS, Sweep, SweepInterrupted, run_sweep
from policyopt.errors import SpecError
from policyopt.report import (
    TABLE_NOTES,
    compare_table,
    sweep_header,
    write_compare,
    write_csv,
)
from policyopt.sim import EngineResult

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "configs" / "paper_default.yaml"
LOADS = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.05, 1.1)
"""Loads (x lambda*): dense between 0.8 and 0.95, where vanilla vLLM turns unstable."""

HORIZON_S = 28800.0
"""8 simulated hours per run: drift intervals of a few tokens/s near the boundary."""


def table_record(r: EngineResult) -> dict[str, Any]:
    """One row of ``single_engine.csv``: the compare-table columns as numbers.

    Rates in requests/s, latencies in seconds, drifts in tokens/s, shares in percent.
    """
    return {
        "scheduler": r.scheduler,
        "load": r.load,
        "rate_req_s": r.rate,
        "throughput_req_s": r.throughput,
        "latency_mean_s": r.latency_mean,
        "latency_p99_s": r.latency_p99,
        "ttft_mean_s": r.ttft_mean,
        "drift_tok_s": r.drift,
        "drift_low_tok_s": r.drift_ci[0],
        "drift_high_tok_s": r.drift_ci[1],
        "fluid_drift_tok_s": r.fluid_drift,
        "verdict": r.verdict,
        "full_batches_pct": 100 * r.full_batch_share,
        "non_wc_batches_pct": 100 * r.non_work_conserving_share,
    }


def markdown(sweep: Sweep, command: str, wall_s: float) -> str:
    """``single_engine.md``: settings, the table and how to regenerate it."""
    header = "\n".join(
        f"- {line.replace('*', chr(92) + '*')}" for line in sweep_header(sweep).splitlines()
    )
    notes = " ".join(TABLE_NOTES.split()).replace("*", "\\*")
    return (
        "# Single engine: schedulers x loads\n\n"
        f"{header}\n"
        f"- made by `{command}` ({wall_s:.0f} s wall time)\n\n"
        f"{compare_table(sweep.results, markdown=True)}\n\n"
        f"{notes}\n\n"
        "![number in system](single_engine_n_system.png)\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the sweep and write the files; returns the exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python experiments/single_engine.py --horizon 3600 --jobs 2",
    )
    parser.add_argument(
        "--config", default=str(CONFIG), help="scenario file (default: %(default)s)"
    )
    parser.add_argument(
        "--horizon", type=float, default=HORIZON_S, help="simulated s per run (%(default)g)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed shared by all runs (0)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (1)")
    parser.add_argument(
        "--loads",
        default=",".join(f"{x:g}" for x in LOADS),
        help="loads, multiples of lambda* (%(default)s)",
    )
    parser.add_argument("--out", default=str(HERE / "out"), help="working files (%(default)s)")
    parser.add_argument(
        "--results", default=str(HERE / "results"), help="kept results (%(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        loads = [float(x) for x in args.loads.split(",")]
    except ValueError:
        parser.error(f"--loads: {args.loads!r} is not a comma-separated list of numbers")
    try:
        base = load_config(args.config, horizon=args.horizon, seed=args.seed)
    except SpecError as err:
        print(f"single_engine: error: {err}", file=sys.stderr)
        return 2

    started = time.monotonic()
    finished: list[EngineResult] = []

    def log(r: EngineResult) -> None:
        """Without a terminal (no progress bar), one line per finished run on stderr."""
        finished.append(r)
        if not sys.stderr.isatty():
            print(
                f"[{len(finished)}/{len(loads) * len(DEFAULT_SCHEDULERS)}] {r.scheduler} "
                f"at {r.load:g} x lambda*: {r.verdict} ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    code = 0
    try:
        sweep = run_sweep(base, list(DEFAULT_SCHEDULERS), loads, jobs=args.jobs, on_result=log)
    except SweepInterrupted as stop:
        sweep, code = stop.sweep, 130
    wall = time.monotonic() - started
    for f in sweep.failures:
        print(f"failed: {f.scheduler} at load {f.load:g}: {f.error}", file=sys.stderr)
        code = code or 1

    out, results = Path(args.out), Path(args.results)
    written = write_compare(sweep, out)
    command = "python experiments/single_engine.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    if code == 0:
        results.mkdir(parents=True, exist_ok=True)
        written.append(
            write_csv(results / "single_engine.csv", [table_record(r) for r in sweep.results])
        )
        md = results / "single_engine.md"
        md.write_text(markdown(sweep, command.strip(), wall))
        written.append(md)
        png = results / "single_engine_n_system.png"
        shutil.copyfile(out / "n_system.png", png)
        written.append(png)
    else:
        print(f"not all runs finished: {results} left as it was", file=sys.stderr)

    print(sweep_header(sweep))
    print()
    print(compare_table(sweep.results))
    print()
    print(TABLE_NOTES)
    print(f"\n{len(sweep.results)} runs in {wall:.0f} s wall time")
    for path in written:
        print(f"wrote {path}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
