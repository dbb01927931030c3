"""``policyopt benchmark``: instances x policies x seeds, a table, CSV/JSON files and a figure
(``docs/benchmark.md``).

The runs go through :func:`policyopt.sweep.run_all` (``--jobs`` processes, or ``--backend ray``;
the same numbers either way). A run that raises is reported and the others go on (exit code
1); Ctrl-C keeps the finished runs in the files (exit code 130).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from policyopt.benchmark.instances import CRISS_CROSS_INSTANCES, INSTANCES, Instance, get_instance
from policyopt.benchmark.report import cell_row, document, plot, run_row, table
from policyopt.benchmark.runner import RunOutcome, aggregate, plan, run_one
from policyopt.errors import SpecError
from policyopt.jsonout import to_json
from policyopt.outdir import explicit_out, fresh_default
from policyopt.policies import make_policy
from policyopt.report import write_csv
from policyopt.sim.run import check_run_size, expected_requests
from policyopt.sweep import RunsInterrupted, make_backend, run_all

DEFAULT_BENCHMARK_POLICIES = ("fcfs", "c-mu", "max-pressure", "max-weight")
DEFAULT_BENCHMARK_HORIZON_S = 1_000_000.0
"""Simulated seconds per run of ``policyopt benchmark``."""
DEFAULT_REPLICATIONS = 10
DEFAULT_BENCHMARK_OUT = Path("policyopt-results") / "benchmark"
BENCHMARK_FILES = ("benchmark.csv", "runs.csv", "benchmark.json", "benchmark.png")
"""What ``policyopt benchmark`` writes into its folder."""

BENCHMARK_EPILOG = """\
examples:
  policyopt benchmark --jobs 2                   # criss-cross, 6 regimes x 4 policies x 10 seeds
  policyopt benchmark criss-cross-bh criss-cross-il --policies c-mu,max-pressure:dai-lin \\
      --replications 4 --horizon 200000
  policyopt benchmark reentrant-2 --policies lbfs,fcfs,max-pressure --horizon 2e6
  policyopt benchmark --list                      # the instances and their references

INSTANCE is a benchmark instance (criss-cross-il, -bl, -im, -bm, -ih, -bh: Dai and Gluzman's
load regimes; reentrant-L, extended-six-class-L for L = 2..7) or any library network (no
references). Default: the six criss-cross regimes, fcfs, c-mu, max-pressure and max-weight,
10 replications (seeds --seed .. --seed + 9) of 10^6 simulated seconds each, warm-up a tenth.
Per instance and policy: the mean number in system over the seeds, with a 95% interval from
the 20 batch means of every seed pooled; the reference value of that policy where one is
known (exact, or reported in the literature) and whether an exact one lies in the interval;
the instance's optimum and the gap to it; the seeds' stability verdicts; Little's law gap.
Writes benchmark.csv (one row per instance and policy), runs.csv (one row per run),
benchmark.json (both, the settings and every reference with its source and assumptions) and
benchmark.png into --out (default policyopt-results/benchmark, or a numbered folder next to
it when that holds results). A run expecting more than 10^8 requests is refused without
--force (checked run by run).
"""


def add_benchmark_arguments(p: argparse.ArgumentParser, types: dict[str, Any]) -> None:
    """The arguments of ``policyopt benchmark`` (``types``: the command line's argparse types
    ``policies``, ``positive_int``, ``nonnegative_int``, ``positive_float``)."""
    p.add_argument(
        "instances",
        nargs="*",
        metavar="INSTANCE",
        help="benchmark instances or library networks (default: the six criss-cross regimes)",
    )
    p.add_argument(
        "--policies",
        type=types["policies"],
        metavar="P1,P2,...",
        help=f"policies (default {','.join(DEFAULT_BENCHMARK_POLICIES)})",
    )
    p.add_argument(
        "--replications",
        type=types["positive_int"],
        default=DEFAULT_REPLICATIONS,
        metavar="N",
        help=f"seeds per instance and policy (default {DEFAULT_REPLICATIONS})",
    )
    p.add_argument(
        "--seed",
        type=types["nonnegative_int"],
        default=0,
        metavar="S",
        help="first seed (default 0); every policy sees the same seeds",
    )
    p.add_argument(
        "--horizon",
        type=types["positive_float"],
        default=DEFAULT_BENCHMARK_HORIZON_S,
        metavar="S",
        help="simulated seconds per run (default 1e6)",
    )
    p.add_argument(
        "--warmup",
        type=types["positive_float"],
        metavar="S",
        help="simulated seconds left out of the averages (default a tenth of the horizon)",
    )
    p.add_argument(
        "--jobs",
        type=types["nonnegative_int"],
        default=1,
        metavar="N",
        help="parallel processes (default 1; 0 = one per CPU); same numbers either way",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help=f"output folder (default {DEFAULT_BENCHMARK_OUT}); one holding an earlier "
        "benchmark's files is refused without --overwrite",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the files already in --out")
    p.add_argument(
        "--force",
        action="store_true",
        help="run even when one run expects more than 10^8 requests (refused otherwise)",
    )
    p.add_argument("--json", action="store_true", help="print JSON to stdout instead of a table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--list", action="store_true", help="list the instances and their references, and exit"
    )
    from policyopt.cli import add_backend_args  # (the command line is loaded by now)

    add_backend_args(p)


def _list_instances(json_mode: bool) -> int:
    """``--list``: the registered instances, their optimum and references with sources."""
    if json_mode:
        doc = document([], [], dict(INSTANCES), {})
        print(to_json(doc["instances"]))
        return 0
    for inst in INSTANCES.values():
        print(f"{inst.name}: {inst.description}")
        if inst.optimum is not None:
            print(f"  optimum {inst.optimum.value:g}: {inst.optimum.source}")
        for policy, ref in inst.references.items():
            print(f"  {policy}: {ref.value:.4g} ({ref.kind}) {ref.source}")
    print("\nany library network (policyopt networks) is an instance too, without references")
    return 0


def _out_folder(args: argparse.Namespace) -> tuple[Path, str | None]:
    """The output folder and a note when it is a numbered one next to the default."""
    if args.out is not None:
        return explicit_out(args.out, BENCHMARK_FILES, overwrite=args.overwrite), None
    folder, numbered = fresh_default(DEFAULT_BENCHMARK_OUT, BENCHMARK_FILES)
    note = f"results go to {folder}: {DEFAULT_BENCHMARK_OUT} holds an earlier benchmark's"
    return folder, note if numbered else None


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Run the benchmark and write its files (see the module docstring)."""
    if args.list:
        return _list_instances(args.json)
    names = [n.strip().lower() for n in args.instances] or list(CRISS_CROSS_INSTANCES)
    instances: dict[str, Instance] = {n: get_instance(n) for n in dict.fromkeys(names)}
    policies = list(dict.fromkeys(args.policies or DEFAULT_BENCHMARK_POLICIES))
    nets = {name: inst.build() for name, inst in instances.items()}
    for net in nets.values():
        for p in policies:
            make_policy(p).bind(net)  # every bad policy name before anything runs
    for name, net in nets.items():
        check_run_size(
            expected_requests(net.workflow_rates().values(), args.horizon),
            f"instance {name}: its rates x horizon {args.horizon:g} s (one run)",
            force=args.force,
        )
    if args.warmup is not None and args.warmup >= args.horizon:
        raise SpecError(
            "--warmup",
            f"{args.warmup:g} s is not below the horizon ({args.horizon:g} s)",
            "give a warm-up shorter than --horizon",
        )
    seeds = list(range(args.seed, args.seed + args.replications))
    runs = plan(list(instances), policies, seeds, args.horizon, args.warmup)
    out, note = _out_folder(args)
    if note:
        print(note, file=sys.stderr if args.json else sys.stdout, flush=True)
    out.mkdir(parents=True, exist_ok=True)

    def failed(index: int, error: str) -> None:
        r = runs[index]
        tqdm.write(
            f"policyopt: warning: run {r.instance} {r.policy} seed {r.seed} failed: {error}",
            file=sys.stderr,
        )

    code = 0
    start = time.perf_counter()
    try:
        outcome = run_all(
            runs,
            run_one,
            backend=make_backend(args.backend, args.jobs, args.ray_address),
            progress=not args.no_progress,
            desc="benchmark",
            label=lambda r: f"{r.instance} {r.policy} s{r.seed}",
            on_error=failed,
        )
    except RunsInterrupted as stop:
        outcome, code = stop.outcome, 130
    wall = time.perf_counter() - start
    done: list[RunOutcome] = list(outcome.results.values())
    cells = aggregate(done, instances)
    settings: dict[str, Any] = {
        "instances": list(instances),
        "policies": policies,
        "seeds": seeds,
        "horizon": args.horizon,
        "warmup": args.horizon / 10 if args.warmup is None else args.warmup,
        "jobs": args.jobs,
        "wall_s": wall,
        "runs_cpu_s": sum(o.cpu_s for o in done),  # the runs' CPU times, summed
        "complete": outcome.complete,
    }
    if outcome.errors:
        settings["failures"] = [
            {"instance": r.instance, "policy": r.policy, "seed": r.seed, "error": e}
            for r, e in ((runs[i], e) for i, e in outcome.errors.items())
        ]
        code = code or 1
    written = []
    if cells:
        written.append(write_csv(out / "benchmark.csv", [cell_row(c) for c in cells]))
        written.append(write_csv(out / "runs.csv", [run_row(o) for o in done]))
        written.append(plot(cells, out / "benchmark.png", "policyopt benchmark"))
    (out / "benchmark.json").write_text(to_json(document(cells, done, instances, settings)))
    written.append(out / "benchmark.json")
    if args.json:
        print(to_json(document(cells, done, instances, settings)))
    else:
        print(
            f"{len(done)} of {len(runs)} runs ({len(instances)} instances x {len(policies)} "
            f"policies x {len(seeds)} seeds, {args.horizon:g} s each) in {wall:.1f} s wall "
            f"with {args.jobs} process(es); {settings['runs_cpu_s']:.1f} s of CPU in the runs"
        )
        print(table(cells), flush=True)
    for i, error in outcome.errors.items():
        r = runs[i]
        print(f"failed: {r.instance} {r.policy} seed {r.seed}: {error}", file=sys.stderr)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if code == 130:
        print(
            f"policyopt: interrupted after {len(done)} of {len(runs)} runs; kept them in {out}",
            file=sys.stderr,
        )
    return code
