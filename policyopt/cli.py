"""The ``policyopt`` command line.

Subcommands (``policyopt COMMAND --help`` shows options and examples):

* ``capacity``: the engine's token capacity ``mu`` (tokens/s), the boundary ``lambda*``
  (requests/s) and what other token budgets would give; with ``--region``, the capacity
  region of (prefill, decode) token rates under the token budget and ``max_seqs``.
* ``simulate``: one simulation run; its metrics as text or JSON, optional files.
* ``compare``: every scheduler at every load (multiples of ``lambda*``); a table, a CSV, a
  JSON file and a figure of the number in system.
* ``boundary``: the largest load one scheduler (or a network's policy) keeps stable, by
  bisection with a sequential drift test; the share of capacity it keeps.
* ``sweep``: a grid of configurations x loads x schedulers/policies x seeds from a YAML
  spec, locally or on Ray, streamed to a CSV and resumable.
* ``fit-batch-time``: fit the affine batch-time model to a profile CSV.
* ``train``: train a PPO / A2C / MaskablePPO scheduler on a network (``docs/learning.md``).
* ``evaluate``: designed and trained policies on common random numbers, with intervals.

A configuration is a YAML or TOML scenario file (engine, scheduler, workload, run); without
one the defaults apply (the paper's engine, staircase batch time with ``b = 512``, lognormal
lengths with means 129/112 tokens). Command-line options override the file.

Exit codes: 0 success; 1 some simulation runs failed or a file could not be written; 2 a bad
configuration or command line (one line ``policyopt: error: <field>: <problem>; <fix>`` on
stderr); 130 interrupted (Ctrl-C), keeping what was already written.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from pydantic import ValidationError
from tqdm import tqdm

from policyopt import __version__
from policyopt.cli_benchmark import BENCHMARK_EPILOG, add_benchmark_arguments, cmd_benchmark
from policyopt.cli_boundary import BOUNDARY_EPILOG, add_boundary_arguments, cmd_boundary
from policyopt.cli_learn import add_learn_parsers
from policyopt.cli_network import (
    DEFAULT_NETWORK_HORIZON_S,
    DEFAULT_NETWORK_LOAD,
    DEFAULT_POLICIES,
    cmd_networks,
    network_arg,
    network_capacity,
    network_compare,
    network_simulate,
)
from policyopt.cli_optimal import add_optimal_parser
from policyopt.cli_sweep import SWEEP_EPILOG, cmd_sweep
from policyopt.cli_tune import add_tune_parser
from policyopt.compare import (
    DEFAULT_LOADS,
    DEFAULT_SCHEDULERS,
    RunFailure,
    Sweep,
    SweepInterrupted,
    plan_sweep,
    run_sweep,
    scenario_for,
)
from policyopt.errors import SpecError
from policyopt.jsonout import to_json, write_json
from policyopt.model import EngineSpec, Scenario, Workload, build, fit_affine
from policyopt.model.batch_time import AffineBatchTime
from policyopt.model.config import read_mapping, spec_error
from policyopt.model.network import NetworkSpec, scenario_network
from policyopt.model.validation import MAX_TOKEN_BUDGET
from policyopt.outdir import REGION_FILES, compare_out, explicit_out, simulate_out
from policyopt.policies import split_policy_names
from policyopt.report import (
    TABLE_NOTES,
    CsvAppender,
    compare_table,
    describe_engine,
    flat_summary,
    fmt,
    format_pairs,
    format_table,
    pct,
    plot_n_system,
    plot_region,
    sweep_header,
    vertex_name,
    write_batches_csv,
    write_compare,
    write_csv,
    write_series_csv,
)
from policyopt.sim import EngineResult, simulate
from policyopt.sim.run import MAX_REQUESTS, check_run_size, scenario_requests
from policyopt.solvers.capacity import batch_seconds, budget_sweep, capacity
from policyopt.solvers.memory_bound import MemoryBound, memory_bound
from policyopt.sweep import BACKENDS, horizon_bar, make_backend

if TYPE_CHECKING:
    from policyopt.solvers.batch_size_region import RegionReport

PROG = "policyopt"

COMPARE_HORIZON_S = 7200.0
"""Default horizon of ``policyopt compare``, simulated seconds (2 h).

Long enough for clear verdicts at the default loads (the drift interval near the boundary is
about +-10 tokens/s, against a 2% threshold of about 60 tokens/s), short enough that the
default sweep of 24 runs takes well under a minute or two on one core.
"""

DEFAULT_COMPARE_OUT = Path("policyopt-results") / "compare"
"""Where ``policyopt compare`` writes its files unless ``--out`` says otherwise."""


# ----------------------------------------------------------------------------- helpers


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(message: str) -> None:
    """Print ``policyopt: error: <message>`` as one line on stderr."""
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    """Print ``policyopt: warning: <message>`` on stderr without breaking a progress bar."""
    tqdm.write(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)


def _info(message: str, json_mode: bool) -> None:
    """A message for the user: stdout normally, stderr when stdout carries JSON."""
    print(message, file=sys.stderr if json_mode else sys.stdout, flush=True)


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return value


def _finite_float(text: str) -> float:
    """argparse type: a finite number (its range is checked with the config)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _int_at_least(minimum: int, maximum: int | None = None, why: str = "") -> Callable[[str], int]:
    """argparse type: a whole number >= ``minimum`` (and <= ``maximum``, because ``why``);
    ``1e3`` is read as 1000."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if not (math.isfinite(number) and number == int(number)):
                raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
            value = int(number)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(
                f"{text!r} is above the limit of {maximum:,} ({why}; docs/model.md)"
            )
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)
_token_budget = _int_at_least(
    1, MAX_TOKEN_BUDGET, "the simulator tabulates the batch time of every batch size up to it"
)


def _list_of(
    item: Callable[[str], Any], what: str, split: Callable[[str], list[str]] | None = None
) -> Callable[[str], list[Any]]:
    """argparse type: a comma-separated list of ``item`` (``split``: how the text is cut into
    items; by default at every comma)."""

    def parse(text: str) -> list[Any]:
        parts = split(text) if split else [p.strip() for p in text.split(",")]
        if not parts or any(not p for p in parts):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma-separated list of {what} (e.g. {_EXAMPLES[what]})"
            )
        try:
            return [item(p) for p in parts]
        except argparse.ArgumentTypeError as err:
            raise argparse.ArgumentTypeError(f"in {text!r}: {err}") from None

    return parse


_EXAMPLES = {
    "loads": "0.8,0.9,1.1",
    "token budgets": "256,512,1024",
    "scheduler names": "orca,sarathi",
    "policy names": "fcfs,max-pressure",
}


def load_config(
    path: str | None,
    *,
    scheduler: str | None = None,
    horizon: float | None = None,
    seed: int | None = None,
    default_horizon: float | None = None,
) -> Scenario:
    """The scenario of a config file (or the defaults), with command-line overrides.

    ``horizon`` (simulated seconds) and ``seed`` replace ``run.horizon_s`` and ``run.seed``;
    ``default_horizon`` applies when neither the command line nor the file sets a horizon.
    Raises :class:`SpecError` naming the offending field.
    """
    data: dict[str, Any] = read_mapping(path) if path else {}
    if scheduler is not None:
        data["scheduler"] = scheduler
    run = data.get("run")
    if run is None:
        run = {}
    if isinstance(run, dict):
        run = dict(run)
        if horizon is not None:
            run["horizon_s"] = horizon
        elif default_horizon is not None and "horizon_s" not in run:
            run["horizon_s"] = default_horizon
        if seed is not None:
            run["seed"] = seed
        if run:
            data["run"] = run
    return build(Scenario, data)


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """``--backend local|ray`` and ``--ray-address ADDR`` (see :func:`make_backend`)."""
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="where the runs go: local (--jobs processes on this machine, the default) or "
        "ray (a Ray cluster, --ray-address; without it a local Ray instance of --jobs CPUs; "
        'needs pip install "policyopt[ray]")',
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --backend ray: the address of a running Ray cluster's head (HOST:6379, as "
        "ray start --head prints it); unreachable, it fails within seconds",
    )


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and shows defaults where given."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


# ----------------------------------------------------------------------------- capacity


def _classes_network(scen: Scenario, args: argparse.Namespace) -> NetworkSpec:
    """A scenario with request classes or a limited KV cache runs as its one-engine network
    (one class, and one workflow, per request class); its file's horizon, seed, warm-up and
    samples (with the command line's overrides already applied) become the network run's."""
    args.scheduler = None  # applied to the scenario by load_config
    args.horizon = scen.run.horizon_s
    args.seed = scen.run.seed
    args.warmup = scen.run.warmup
    args.samples = scen.run.samples
    return scenario_network(scen)


def _check_one_workload_policies(flag: str, names: list[str]) -> None:
    """On a scenario with one workload a policy has no classes to order, only a batch to cap:
    the policies run on the scenario's one-engine, one-class network when one of them caps
    the tokens of a batch (``batch-cap:...``; the others are then its uncapped baselines).
    Otherwise refuse them, naming ``flag``."""
    from policyopt.policies import make_policy

    if not any(make_policy(name).caps_tokens for name in names):
        raise SpecError(
            flag,
            "a policy orders request classes, and this scenario has one workload",
            "declare classes in the scenario (docs/model.md), give a network, or cap batches "
            "(batch-cap:TOKENS[,JOBS]:fcfs)",
        )


def _with_budget(engine: EngineSpec, budget: int | None) -> EngineSpec:
    """``engine`` with the token budget of ``--budget`` (validated again), if given."""
    if budget is None:
        return engine
    data = engine.model_dump()
    data["token_budget"] = budget
    return build(EngineSpec, data, prefix="engine")


def _check_region_args(args: argparse.Namespace, net: NetworkSpec | None) -> None:
    """Refuse the options of ``capacity`` that do not go with ``--region`` (or need it)."""
    if not args.region:
        for flag, given in (("--out", args.out is not None), ("--overwrite", args.overwrite)):
            if given:
                raise SpecError(
                    flag,
                    "only the capacity region writes files",
                    f"add --region, or drop {flag}",
                )
        return
    if net is not None:
        raise SpecError(
            "--region",
            f"CONFIG is the network {net.name!r}, and the request-cap region is one engine's",
            "give a scenario file (one engine), or drop --region for the network's capacity LP",
        )
    if args.budgets is not None:
        raise SpecError(
            "--budgets",
            "the budget sweep is not part of the --region report",
            "drop --budgets (--budget B sets the engine's budget), or drop --region",
        )


def _memory_pairs(mem: MemoryBound | None) -> list[tuple[str, str]]:
    """The ``memory`` and ``binds`` lines of ``capacity`` (none without a KV cache)."""
    if mem is None:
        return []
    pairs = [
        (
            "memory",
            f"M = {mem.kv_capacity} tokens, {mem.kv_token_seconds:.1f} KV-token-s per request "
            f"({mem.kv_token_batches:.1f} token-batches x {mem.batch_ms:.2f} ms), "
            f"lambda_mem = {mem.lambda_mem:.3f} req/s",
        )
    ]
    pairs.append(
        (
            "mem max",
            f"{mem.lambda_mem_upper:.3f} req/s = M / (t_min E[h]) with the shortest batch "
            f"({mem.fastest_batch_ms:.2f} ms): no scheduler carries more with this cache",
        )
    )
    if mem.lambda_mem_capacity_batch < mem.lambda_mem:
        pairs.append(
            (
                "at t(n*)",
                f"lambda_mem = {mem.lambda_mem_capacity_batch:.3f} req/s if every batch took "
                f"the capacity batch's {mem.capacity_batch_ms:.2f} ms (conservative)",
            )
        )
    if mem.binds == "memory":
        why = (
            f"memory at {mem.lambda_mem:.3f} req/s, before the tokens at lambda* = "
            f"{mem.lambda_star:.3f} req/s (a full cache holds batches of "
            f"{mem.mem_batch:.0f} tokens)"
        )
    else:
        why = (
            f"tokens at lambda* = {mem.lambda_star:.3f} req/s, before the memory at "
            f"{mem.lambda_mem:.3f} req/s"
        )
    verdict = ": the cache overflows (preemptions, a growing backlog)" if mem.kv_load >= 1 else ""
    pairs.append(("binds", f"{why}; the config's rate is {mem.kv_load:.3f} x lambda_mem{verdict}"))
    return pairs


def cmd_capacity(args: argparse.Namespace) -> int:
    """``policyopt capacity``: capacity, boundary and a budget sweep (or, with ``--region``,
    the request-cap capacity region)."""
    net = network_arg(args.config)
    _check_region_args(args, net)
    if net is not None:
        return network_capacity(net, args)
    scen = load_config(args.config)
    if args.region:
        workloads = list(scen.classes.values()) if scen.classes else [scen.workload]
        return capacity_region_report(_with_budget(scen.engine, args.budget), workloads, args)
    if scen.multiclass:
        return network_capacity(_classes_network(scen, args), args)
    engine = _with_budget(scen.engine, args.budget)
    workload = scen.workload
    cap = capacity(engine, workload)
    mem = memory_bound(engine, workload) if engine.kv_cache is not None else None
    share = cap.mean_prompt / cap.mean_tokens
    budgets = args.budgets
    sweep = budget_sweep(engine, workload, budgets)
    rows = []
    for c in sweep:
        t_b = 1000.0 * float(batch_seconds(engine, np.array([c.token_budget]), share)[0])
        rows.append({**c.to_dict(), "t_b_ms": t_b})
    if args.json:
        print(
            to_json(
                {
                    "engine": engine.model_dump(mode="json"),
                    "capacity": cap.to_dict(),
                    "budget_sweep": rows,
                    **({"memory": mem.to_dict()} if mem is not None else {}),
                }
            )
        )
        return 0
    pairs = [
        ("engine", describe_engine(engine)),
        (
            "workload",
            f"m_p = {cap.mean_prompt:.2f}, m_d = {cap.mean_output:.2f} tokens per request "
            f"(m_p + m_d = {cap.mean_tokens:.2f})",
        ),
        (
            "mu",
            f"{cap.mu:.1f} tokens/s (best batch {cap.best_batch} tokens, "
            f"{cap.batch_ms:.2f} ms each)",
        ),
        ("lambda*", f"{cap.lambda_star:.3f} req/s = mu / (m_p + m_d)"),
        (
            "rate",
            f"{cap.rate:.3f} req/s in the config = load {cap.load:.3f} x lambda* "
            + (
                "(every work-conserving scheduler is stable)"
                if cap.load < 1
                else "(no scheduler is stable)"
            ),
        ),
    ]
    print(format_pairs(pairs + _memory_pairs(mem)))
    if isinstance(engine.batch_time, AffineBatchTime):
        print(
            "note: affine batch time; the capacity uses the workload's prefill share "
            f"({share:.3f}) and no KV-read term (an upper bound when ckv_ms > 0)"
        )
    print()
    print("budget sweep (what another token budget b would give):")
    table = [
        [
            str(r["token_budget"]),
            fmt(r["t_b_ms"], 2),
            str(r["best_batch"]),
            fmt(r["mu"], 1),
            fmt(r["lambda_star"], 3),
        ]
        for r in rows
    ]
    print(format_table(["b", "t(b) ms", "best n", "mu tokens/s", "lambda* req/s"], table))
    return 0


REGION_COLUMNS: tuple[str, ...] = (
    "vertex",
    "prefill\ntokens/batch",
    "decode\ntokens/batch",
    "batch\nms",
    "prefill\ntokens/s",
    "decode\ntokens/s",
)
"""Headers of the ``capacity --region`` table, one row per vertex."""


def _theta_words(region: RegionReport) -> str:
    """``theta`` and what it means for the operating point."""
    if region.on_boundary:
        where = "inside, on the boundary (no margin)"
    elif region.inside:
        where = f"inside (the load can grow by {100 * (region.theta - 1):.1f}%)"
    else:
        where = f"outside (the engine carries at most {100 * region.theta:.1f}% of it)"
    return f"{region.theta:.4f}: {where}"


def region_text(engine: EngineSpec, region: RegionReport, classes: int = 1) -> str:
    """The ``capacity --region`` report as text: the engine, the operating point (tokens/s),
    ``theta``, the largest arrival rate (requests/s), and the table of vertices (tokens per
    batch, batch ms, tokens/s); ``classes`` request classes share the engine."""
    mix = ", ".join(
        f"{x} prefill + {y} decode tokens per {ms:.2f} ms batch ({100 * share:.1f}% of the time)"
        for x, y, _, ms, share in region.corners
    )
    over = f" (over {classes} request classes)" if classes > 1 else ""
    pairs = [
        ("engine", describe_engine(engine)),
        (
            "workload",
            f"{region.rate:.4g} req/s; m_p = {region.mean_prompt:.2f}, "
            f"m_d = {region.mean_output:.2f} tokens per request{over}",
        ),
        (
            "operating point",
            f"prefill {region.prefill_rate:.1f}, decode {region.decode_rate:.1f} tokens/s "
            "(lambda m_p, lambda m_d)",
        ),
        ("theta", _theta_words(region)),
        ("largest rate", f"{region.rate_max:.4g} req/s along the workload's mix (theta x lambda)"),
        ("boundary mix", f"theta x the operating point is reached by {mix}"),
    ]
    lines = [format_pairs(pairs)]
    if isinstance(engine.batch_time, AffineBatchTime) and engine.batch_time.ckv_ms > 0:
        lines.append("note: affine batch time; the region leaves out the KV-read term (ckv_ms > 0)")
    table = [
        [
            vertex_name(i),
            str(v.prefill_tokens),
            str(v.decode_tokens),
            fmt(v.batch_ms, 2),
            fmt(v.prefill_rate, 1),
            fmt(v.decode_rate, 1),
        ]
        for i, v in enumerate(region.vertices)
    ]
    lines += [
        "",
        "capacity region (vertices counterclockwise from the origin):",
        format_table(REGION_COLUMNS, table, align="lrrrrr"),
    ]
    return "\n".join(lines)


def capacity_region_report(
    engine: EngineSpec, workloads: Sequence[Workload], args: argparse.Namespace
) -> int:
    """``policyopt capacity --region``: the vertices of the engine's capacity region (batch
    configurations and token rates), the workloads' operating point and ``theta``; as text
    (:func:`region_text`) or ``--json``, and with ``--out DIR`` the vertices as
    ``region.csv`` and a figure ``region.png``."""
    folder = (
        explicit_out(args.out, REGION_FILES, overwrite=args.overwrite)
        if args.out is not None
        else None
    )
    from policyopt.solvers.batch_size_region import capacity_region  # loads CVXPY

    region = capacity_region(engine, workloads)
    if args.json:
        print(to_json({"engine": engine.model_dump(mode="json"), "region": region}))
    else:
        print(region_text(engine, region, len(workloads)))
    if folder is None:
        return 0
    rows = [
        {"vertex": vertex_name(i), **dataclasses.asdict(v)} for i, v in enumerate(region.vertices)
    ]
    kmax = f", max_seqs = {engine.max_seqs}" if engine.max_seqs else ""
    written = [
        write_csv(folder / "region.csv", rows),
        plot_region(
            [
                (
                    f"capacity region, b = {engine.token_budget}",
                    [(v.prefill_rate, v.decode_rate) for v in region.vertices],
                )
            ],
            [("operating point", region.prefill_rate, region.decode_rate)],
            folder / "region.png",
            title=f"b = {engine.token_budget}{kmax}: theta = {region.theta:.4f}",
        ),
    ]
    for path in written:
        _info(f"wrote {path}", args.json)
    return 0


# ----------------------------------------------------------------------------- simulate


def _simulate_pairs(r: EngineResult) -> list[tuple[str, str]]:
    """``key: value`` lines describing one run."""

    def ci(pair: tuple[float, float], digits: int | None = None) -> str:
        return f"[{fmt(pair[0], digits)}, {fmt(pair[1], digits)}]"

    pairs = [
        ("scheduler", r.scheduler),
        (
            "rate",
            f"{r.rate:.3f} req/s = load {r.load:.3f} x lambda* ({r.lambda_star:.3f} req/s; "
            f"mu = {r.mu:.1f} tokens/s)",
        ),
        ("horizon", f"{r.horizon:g} s (warm-up {r.warmup:g} s), seed {r.seed}"),
        ("arrived / completed", f"{r.arrived} / {r.completed} requests"),
        (
            "throughput",
            f"{fmt(r.throughput, 3)} req/s {ci(r.throughput_ci, 3)}, "
            f"{fmt(r.token_throughput, 1)} tokens/s",
        ),
        ("mean in system", f"{fmt(r.mean_in_system)} requests {ci(r.mean_in_system_ci)}"),
        (
            "latency s",
            f"mean {fmt(r.latency_mean)} {ci(r.latency_mean_ci)}, p50 {fmt(r.latency_p50)}, "
            f"p90 {fmt(r.latency_p90)}, p99 {fmt(r.latency_p99)}",
        ),
        (
            "TTFT s",
            f"mean {fmt(r.ttft_mean)}, p50 {fmt(r.ttft_p50)}, p90 {fmt(r.ttft_p90)}, "
            f"p99 {fmt(r.ttft_p99)}",
        ),
        (
            "TPOT s",
            f"mean {fmt(r.tpot_mean)}, p50 {fmt(r.tpot_p50)}, p99 {fmt(r.tpot_p99)}",
        ),
        (
            "batches",
            f"{r.batches}, mean {fmt(r.mean_batch_tokens, 1)} tokens, fill {pct(r.batch_fill)}%, "
            f"full {pct(r.full_batch_share)}%, not work-conserving "
            f"{pct(r.non_work_conserving_share)}%",
        ),
        ("utilization", f"{pct(r.utilization)}% of the time busy"),
        ("KV cache tokens", f"mean {fmt(r.kv_mean, 0)}, max {r.kv_max}"),
        ("backlog at end", f"{r.backlog_end} tokens"),
        (
            "backlog drift",
            f"{fmt(r.drift, 1)} tokens/s {ci(r.drift_ci, 1)} (fluid prediction "
            f"{fmt(r.fluid_drift, 1)}, threshold {fmt(r.drift_threshold, 1)})",
        ),
        ("verdict", r.verdict),
    ]
    if r.out_of_range_batches:
        pairs.append(
            (
                "warning",
                f"{r.out_of_range_batches} batches outside the profiled batch-time range",
            )
        )
    return pairs


def cmd_simulate(args: argparse.Namespace) -> int:
    """``policyopt simulate``: one run."""
    net = network_arg(args.config)
    if net is not None:
        return network_simulate(net, args)
    scen = load_config(args.config, scheduler=args.scheduler, horizon=args.horizon, seed=args.seed)
    if scen.network_form:
        return network_simulate(_classes_network(scen, args), args)
    if args.policy is not None:
        _check_one_workload_policies("--policy", [args.policy])
        if args.rate is not None:  # the network path takes --load only
            scen = scenario_for(scen, scen.scheduler, args.rate)
            args.rate = None
        return network_simulate(_classes_network(scen, args), args)
    if args.rate is not None:
        scen = scenario_for(scen, scen.scheduler, args.rate)
    elif args.load is not None:
        cap = capacity(scen.engine, scen.workload)
        scen = scenario_for(scen, scen.scheduler, args.load * cap.lambda_star)
    horizon = scen.run.horizon_s
    check_run_size(
        scenario_requests(scen),
        f"rate {scen.workload.rate:.4g} requests/s x horizon {horizon:g} s",
        force=args.force,
    )
    out = simulate_out(args.out, args.trace_batches, overwrite=args.overwrite)
    bar = horizon_bar(horizon, f"simulate {scen.scheduler.label}")

    def progress(sim_time: float) -> None:
        bar.update(max(0.0, min(sim_time, horizon) - bar.n))

    try:
        result = simulate(scen, record_batches=bool(args.trace_batches), progress=progress)
        progress(horizon)
    finally:
        bar.close()
    written: list[Path] = []
    if args.trace_batches:
        written.append(write_batches_csv(args.trace_batches, result.batch_records))
    if out is not None:
        written.append(write_json(out / "summary.json", result.summary()))
        written.append(write_series_csv(out / "series.csv", result))
        written.append(
            plot_n_system(
                [result],
                out / "n_system.png",
                title=f"{result.scheduler}, seed {result.seed}, horizon {result.horizon:g} s",
            )
        )
    if args.json:
        print(to_json(result.summary()))
    else:
        print(format_pairs(_simulate_pairs(result)))
    for path in written:
        _info(f"wrote {path}", args.json)
    return 0


# ----------------------------------------------------------------------------- compare


def cmd_compare(args: argparse.Namespace) -> int:
    """``policyopt compare``: schedulers x loads, table and files."""
    net = network_arg(args.config)
    if net is not None:
        if args.schedulers:
            raise SpecError(
                "--schedulers", "a network's schedulers are set per engine", "use --policies"
            )
        return network_compare(net, args)
    base = load_config(
        args.config, horizon=args.horizon, seed=args.seed, default_horizon=COMPARE_HORIZON_S
    )
    if base.network_form:
        if args.schedulers:
            raise SpecError(
                "--schedulers",
                "a scenario with request classes or a limited KV cache compares policies on "
                "its scheduler",
                "set scheduler in the file and use --policies (or one simulate per scheduler)",
            )
        return network_compare(_classes_network(base, args), args)
    if args.policies:
        _check_one_workload_policies("--policies", args.policies)
        if args.schedulers:
            raise SpecError(
                "--schedulers",
                "policies are compared on the scenario's scheduler",
                "set scheduler in the file and use --policies (or one simulate per scheduler)",
            )
        return network_compare(_classes_network(base, args), args)
    schedulers = args.schedulers or list(DEFAULT_SCHEDULERS)
    loads = args.loads or list(DEFAULT_LOADS)
    _, plan = plan_sweep(base, schedulers, loads)  # every spec error before anything runs
    backend = make_backend(args.backend, args.jobs, args.ray_address)
    check_run_size(
        sum(scenario_requests(run.scenario) for run in plan),
        f"{len(plan)} runs at loads up to {max(loads):g} x lambda* "
        f"(up to {max(run.rate for run in plan):.4g} requests/s) x horizon "
        f"{base.run.horizon_s:g} s",
        force=args.force,
    )
    out, note = compare_out(args.out, DEFAULT_COMPARE_OUT, overwrite=args.overwrite)
    if note:
        _info(note, args.json)
    out.mkdir(parents=True, exist_ok=True)
    if not args.json:
        where = f"jobs {args.jobs}" if backend.kind == "local" else backend.describe()
        print(f"{len(plan)} runs, horizon {base.run.horizon_s:g} s, {where}", flush=True)
    appender = CsvAppender(out / "compare.csv")

    def failed(f: RunFailure) -> None:
        _warn(f"run {f.scheduler} at load {f.load:g} failed: {f.error}")

    code = 0
    try:
        sweep: Sweep = run_sweep(
            base,
            schedulers,
            loads,
            backend=backend,
            progress=not args.no_progress,
            on_result=lambda r: appender.write(flat_summary(r)),
            on_failure=failed,
        )
    except SweepInterrupted as stop:
        sweep = stop.sweep
        code = 130
    finally:
        appender.close()
    if code == 0 and sweep.failures:
        code = 1
    paths = write_compare(sweep, out)
    if args.json:
        print(to_json(sweep.to_dict()))
    else:
        print(sweep_header(sweep))
        print()
        print(compare_table(sweep.results))
        print()
        print(TABLE_NOTES)
        print()
    for f in sweep.failures:
        _info(f"failed: {f.scheduler} at load {f.load:g}: {f.error}", args.json)
    for path in paths:
        _info(f"wrote {path}", args.json)
    if code == 130:
        print(
            f"{PROG}: interrupted after {len(sweep.results)} of {sweep.planned} runs; "
            f"kept them in {out}",
            file=sys.stderr,
        )
    return code


# ----------------------------------------------------------------------------- fit


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def cmd_fit(args: argparse.Namespace) -> int:
    """``policyopt fit-batch-time``: least-squares affine batch-time model."""
    model, diag = fit_affine(args.profile)
    fields = {k: _rounded(v) for k, v in model.model_dump(exclude_none=True).items()}
    snippet = yaml.safe_dump(
        {"engine": {"batch_time": fields}}, sort_keys=False, default_flow_style=False
    )
    if args.json:
        print(to_json({"batch_time": model.model_dump(), "diagnostics": diag, "yaml": snippet}))
        return 0
    kv_range = f"; KV reads up to {model.max_kv} tokens" if model.max_kv is not None else ""
    pairs = [
        ("rows", f"{int(diag['rows'])} profiled batches from {args.profile}"),
        ("c", f"{model.c_ms:.4g} ms per batch"),
        ("cp", f"{model.cp_ms:.4g} ms per prefill token"),
        ("cd", f"{model.cd_ms:.4g} ms per decode token"),
        ("ckv", f"{model.ckv_ms:.4g} ms per KV-cache token read"),
        ("R^2", f"{diag['r2']:.5f}"),
        ("RMSE", f"{diag['rmse_ms']:.4g} ms"),
        ("profiled range", f"batches up to {model.max_tokens} tokens{kv_range}"),
    ]
    print(format_pairs(pairs))
    clipped = int(diag.get("negative_coefficients_set_to_zero", 0))
    if clipped:
        print(
            f"warning: {clipped} fitted coefficient(s) came out negative and were set to 0; "
            "profile a wider range of batches"
        )
    print()
    print("for the engine config (YAML):")
    print(snippet.rstrip())
    return 0


# ----------------------------------------------------------------------------- parser

_MAIN_EPILOG = """\
examples:
  policyopt capacity                         # the paper's engine: mu, lambda*, budget sweep
  policyopt simulate --scheduler vllm --load 0.9
  policyopt compare                          # 4 schedulers x 6 loads, table + CSV/JSON/PNG
  policyopt compare examples/scenario.yaml --schedulers orca,sarathi --loads 0.9,1.1 --jobs 2
  policyopt boundary --scheduler vllm         # the largest stable load: ~0.87 lambda*
  policyopt sweep examples/sweep.yaml --jobs 2  # a grid, streamed to CSV, resumable
  policyopt fit-batch-time examples/profile.csv
  policyopt networks                         # the library of agent networks
  policyopt capacity rybko-stolyar           # traffic, nominal loads, capacity LP, duals
  policyopt compare rybko-stolyar --policies priority:exit,max-pressure
  policyopt train rybko-stolyar --algo maskable-ppo --timesteps 200000 --out runs/rs
  policyopt evaluate rybko-stolyar --policies max-pressure,fluid,maskable-ppo:runs/rs
  policyopt benchmark --jobs 2               # criss-cross regimes x policies x seeds

CONFIG is a scenario file (one engine), or a network: a library name or a network file.
Without CONFIG the defaults apply: token budget 512, the paper's staircase batch time
(CodeLlama-34B on an A100), lognormal prompt/output lengths with means 129/112 tokens.
The files of the examples are in the repository's examples/ folder.
Exit codes: 0 ok, 1 runs failed, 2 bad config or arguments, 130 interrupted.
"""

_CAPACITY_EPILOG = f"""\
examples:
  policyopt capacity
  policyopt capacity examples/scenario.yaml --budget 1024
  policyopt capacity --budgets 128,256,512,1024,2048 --json

  policyopt capacity examples/vertex_c.yaml --region             # the request-cap region
  policyopt capacity examples/vertex_c.yaml --region --out region --budget 1024

  policyopt capacity rybko-stolyar            # a network: traffic, loads, capacity LP

mu = max over n <= b of n / t(n) tokens/s; lambda* = mu / (m_p + m_d) requests/s is the
largest arrival rate any scheduler can carry (Theorem 2 of Li, Dai, Peng). --region: the
convex hull of the origin and the rates (x, y) / t of every batch of x prefill and y decode
tokens with x + y <= b and y + (prefill requests) <= max_seqs, its vertices as batches and
as tokens/s; theta >= 1 when the operating point (lambda m_p, lambda m_d) is inside
(docs/capacity.md). For a network, theta* of the static planning LP is how far every
arrival rate can grow. Token budgets are
at most {MAX_TOKEN_BUDGET:,} (the simulator tabulates the batch time of every batch size up
to the budget; docs/model.md).
"""

_SIMULATE_EPILOG = f"""\
examples:
  policyopt simulate                                  # sarathi, the config's rate
  policyopt simulate examples/scenario.yaml --scheduler orca:whole --rate 12
  policyopt simulate --scheduler vllm --load 0.9 --horizon 7200 --json
  policyopt simulate --load 1.05 --out results/run1
  policyopt simulate --horizon 60 --trace-batches batches.csv

  policyopt simulate rybko-stolyar --policy max-pressure --horizon 3600
  policyopt simulate examples/chat_and_documents.yaml --policy priority:chat>documents

Schedulers: fastertransformer, vllm, orca, sarathi (orca and sarathi take :whole for
whole-prompt admission), and any registered one. --load X sets the rate to X * lambda*. With
a network, or a scenario with request classes, as CONFIG, --policy picks the policy that
orders the classes and --load X scales the rates to X * theta* (the LP boundary); the output
has a row per class.

--out DIR must not hold an earlier run's files (summary.json, series.csv, n_system.png,
jobs.png) unless --overwrite is given. A run expecting more than {MAX_REQUESTS:,} requests
(rate x horizon; a network: the sum of its workflow rates x horizon) is refused unless
--force is given.
"""

_COMPARE_EPILOG = f"""\
examples:
  policyopt compare                        # {len(DEFAULT_SCHEDULERS)} schedulers x \
{len(DEFAULT_LOADS)} loads, horizon {COMPARE_HORIZON_S:g} s
  policyopt compare --jobs 2 --out results/cmp
  policyopt compare examples/scenario.yaml --schedulers orca,sarathi --loads 0.9,1.0,1.1
  policyopt compare --horizon 600 --json > compare.json
  policyopt compare rybko-stolyar --policies priority:exit,priority:entry,max-pressure,fluid
  policyopt compare fork-join --policies fcfs --loads 0.9,1.1 --jobs 2
  policyopt compare --backend ray --ray-address 10.0.0.5:6379   # on a Ray cluster
  policyopt compare examples/chat_and_documents.yaml --policies fcfs,priority:chat>documents

Defaults for one engine: schedulers {",".join(DEFAULT_SCHEDULERS)};
loads {",".join(f"{x:g}" for x in DEFAULT_LOADS)} (multiples of lambda*);
horizon: --horizon, else run.horizon_s of CONFIG, else {COMPARE_HORIZON_S:g} s.
Defaults for a network (or a scenario with request classes): policies
{",".join(DEFAULT_POLICIES)}; one load, {DEFAULT_NETWORK_LOAD:g} (multiples of theta*);
horizon: --horizon, else {DEFAULT_NETWORK_HORIZON_S:g} s.
All runs use the same seed (the same request stream). Writes compare.csv (one row per
run, appended as runs finish), compare.json and n_system.png (jobs.png for a network) into
--out, by default {DEFAULT_COMPARE_OUT} ({DEFAULT_COMPARE_OUT}-NAME for a network).
When that folder already holds results, a second compare writes to a new numbered folder
next to it ({DEFAULT_COMPARE_OUT.name}-2, {DEFAULT_COMPARE_OUT.name}-3, ...) and says so;
an --out DIR that holds results is refused unless --overwrite is given. Runs expecting more
than {MAX_REQUESTS:,} requests in all (rates x horizon) are refused unless --force is given.
--jobs N runs N at a time, for one engine or a network, with the same numbers as one;
--backend ray runs them on a Ray cluster (--ray-address), or on a local Ray instance of
--jobs CPUs, with the same numbers again (docs/sweeps.md). A failed run is reported and
the others go on (exit code 1); Ctrl-C keeps the finished runs (exit code 130).
"""

_FIT_EPILOG = """\
examples:
  policyopt fit-batch-time examples/profile.csv
  policyopt fit-batch-time examples/profile.csv --json

The CSV has a header with prefill_tokens, decode_tokens, time_ms and optionally kv_tokens
(KV-cache tokens read by the batch); one row per profiled batch. The model is
t = c + cp * prefill + cd * decode + ckv * kv milliseconds. Every field must be a finite
number (no nan or inf).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``policyopt`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Capacity, scheduling policies and simulation of LLM inference engines.",
        epilog=_MAIN_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def force_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--force",
            action="store_true",
            help=f"run even when the runs expect more than {MAX_REQUESTS:,} requests in all "
            "(rates x horizon), which is refused otherwise",
        )

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "config",
            nargs="?",
            metavar="CONFIG",
            help="scenario file (.yaml or .toml); default: the built-in defaults",
        )

    p = sub.add_parser(
        "capacity",
        help="token capacity mu, boundary lambda*, budget sweep",
        description="Capacity of the engine for the workload, and what other budgets give.",
        epilog=_CAPACITY_EPILOG,
        formatter_class=_Formatter,
    )
    config_arg(p)
    p.add_argument("--budget", type=_token_budget, metavar="B", help="token budget b to use")
    p.add_argument(
        "--budgets",
        type=_list_of(_token_budget, "token budgets"),
        metavar="B1,B2,...",
        help="budgets of the sweep (default: powers of two from 64 to 4b, and b)",
    )
    p.add_argument(
        "--region",
        action="store_true",
        help="the capacity region of (prefill, decode) token rates that the token budget and "
        "max_seqs allow: its vertices, the workload's operating point and theta",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="with --region: write region.csv (the vertices) and region.png (the figure) "
        "here; a DIR holding them already is refused without --overwrite",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the region files already in --out"
    )
    p.add_argument("--json", action="store_true", help="print JSON to stdout")
    p.set_defaults(func=cmd_capacity)

    p = sub.add_parser(
        "simulate",
        help="simulate one scenario and print its metrics",
        description="Simulate one engine with one scheduler and print its metrics.",
        epilog=_SIMULATE_EPILOG,
        formatter_class=_Formatter,
    )
    config_arg(p)
    p.add_argument("--scheduler", metavar="NAME", help="scheduler (overrides the config)")
    p.add_argument(
        "--policy",
        metavar="NAME",
        help="policy that orders the classes (CONFIG a network, or a scenario with request "
        "classes): fcfs, priority:exit, priority:A>B, c-mu, lbfs, fbfs, max-weight, "
        "max-pressure, max-pressure:dai-lin, fluid; default fcfs; batch-cap:TOKENS,JOBS:P "
        "(or batch-cap:auto,JOBS:P) also on one workload",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--rate", type=_finite_float, metavar="R", help="arrival rate, requests/s")
    group.add_argument(
        "--load", type=_positive_float, metavar="X", help="arrival rate as X * lambda*"
    )
    p.add_argument("--horizon", type=_finite_float, metavar="S", help="simulated seconds")
    p.add_argument("--seed", type=int, metavar="N", help="random seed")
    p.add_argument("--json", action="store_true", help="print the summary as JSON to stdout")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write summary.json, series.csv and n_system.png (a network: summary.json and "
        "jobs.png) here; a DIR holding an earlier run's files is refused without --overwrite",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the result files already in --out"
    )
    force_arg(p)
    p.add_argument(
        "--trace-batches",
        metavar="FILE.csv",
        help="write every batch's composition to this CSV (keeps all batches in memory: "
        "use a short horizon)",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "compare",
        help="compare schedulers over a sweep of loads",
        description="Simulate every scheduler at every load and compare them.",
        epilog=_COMPARE_EPILOG,
        formatter_class=_Formatter,
    )
    config_arg(p)
    p.add_argument(
        "--schedulers",
        type=_list_of(str, "scheduler names"),
        metavar="A,B,...",
        help=f"schedulers (default {','.join(DEFAULT_SCHEDULERS)})",
    )
    p.add_argument(
        "--policies",
        type=_list_of(str, "policy names", split_policy_names),
        metavar="P1,P2,...",
        help=f"network policies (CONFIG a network; default {','.join(DEFAULT_POLICIES)}); on "
        "one workload, with a batch-cap:... among them",
    )
    p.add_argument(
        "--loads",
        type=_list_of(_positive_float, "loads"),
        metavar="X1,X2,...",
        help="loads as multiples of lambda* (default "
        + ",".join(f"{x:g}" for x in DEFAULT_LOADS)
        + f"); for a network, multiples of theta* (default {DEFAULT_NETWORK_LOAD:g})",
    )
    p.add_argument("--horizon", type=_finite_float, metavar="S", help="simulated seconds per run")
    p.add_argument("--seed", type=int, metavar="N", help="random seed shared by all runs")
    p.add_argument(
        "--jobs",
        type=_nonnegative_int,
        default=1,
        metavar="N",
        help="parallel processes (default 1; 0 = one per CPU); same numbers either way",
    )
    add_backend_args(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        help=f"output directory (default {DEFAULT_COMPARE_OUT}, or {DEFAULT_COMPARE_OUT}-NAME "
        "for a network; a numbered one such as compare-2 when that holds results); a DIR "
        "holding an earlier run's files is refused without --overwrite",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the result files already in --out"
    )
    force_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON to stdout instead of a table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "boundary",
        help="the largest stable load of a scheduler or policy (bisection)",
        description="Find the largest load a scheduler (one engine) or policy (a network) "
        "keeps stable: bisection on the load with a sequential drift test at each point.",
        epilog=BOUNDARY_EPILOG,
        formatter_class=_Formatter,
    )
    config_arg(p)
    add_boundary_arguments(p, _positive_float, _int_at_least(2))
    force_arg(p)
    p.set_defaults(func=cmd_boundary)

    p = sub.add_parser(
        "sweep",
        help="a grid of configs x loads x schedulers/policies x seeds, locally or on Ray",
        description="Run every cell of a sweep spec, streaming rows to a CSV file; a rerun "
        "runs only the cells the file lacks.",
        epilog=SWEEP_EPILOG,
        formatter_class=_Formatter,
    )
    p.add_argument("spec", metavar="SPEC.yaml", help="the sweep spec (.yaml or .toml)")
    p.add_argument(
        "--jobs",
        type=_nonnegative_int,
        default=1,
        metavar="N",
        help="parallel processes, or the CPUs of a local Ray instance (default 1; 0 = one per "
        "CPU); same numbers either way",
    )
    add_backend_args(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        help="folder of sweep.csv, sweep.json, sweep.png (default "
        "policyopt-results/sweep-STEM); a sweep.csv there is resumed",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="start again: replace the files in --out"
    )
    force_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON to stdout instead of a table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "benchmark",
        help="instances x policies x seeds against reference values",
        description="A queueing-control benchmark: the long-run average number in system of "
        "each policy on each instance, over several seeds, next to exact or published values.",
        epilog=BENCHMARK_EPILOG,
        formatter_class=_Formatter,
    )
    add_benchmark_arguments(
        p,
        {
            "policies": _list_of(str, "policy names", split_policy_names),
            "positive_int": _positive_int,
            "nonnegative_int": _nonnegative_int,
            "positive_float": _positive_float,
        },
    )
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser(
        "networks",
        help="list the library of named networks",
        description="The library of agent networks and classic queueing networks.",
        epilog="examples:\n  policyopt networks\n  policyopt capacity fork-join\n"
        "  policyopt simulate rybko-stolyar --policy max-pressure --horizon 3600\n",
        formatter_class=_Formatter,
    )
    p.add_argument("--json", action="store_true", help="print JSON to stdout")
    p.set_defaults(func=cmd_networks)

    p = sub.add_parser(
        "fit-batch-time",
        help="fit the affine batch-time model to a profile CSV",
        description="Least-squares fit of t = c + cp*prefill + cd*decode + ckv*kv (ms).",
        epilog=_FIT_EPILOG,
        formatter_class=_Formatter,
    )
    p.add_argument("profile", metavar="PROFILE.csv", help="profile CSV")
    p.add_argument("--json", action="store_true", help="print JSON to stdout")
    p.set_defaults(func=cmd_fit)

    add_learn_parsers(sub, _Formatter)
    add_tune_parser(sub, _Formatter)
    add_optimal_parser(sub, _Formatter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, usage errors
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    if getattr(args, "jobs", 1) == 0:
        args.jobs = os.cpu_count() or 1
    try:
        return int(args.func(args))
    except SpecError as err:
        _error(str(err))
        return 2
    except ValidationError as err:
        _error(str(spec_error(err)))
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of stdout went away (e.g. `| head`): stop quietly, and keep Python's
        # final flush of stdout from failing again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        _error(f"{where}{err.strerror or err}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
