"""The network side of the command line: ``policyopt networks`` and ``capacity`` /
``simulate`` / ``compare`` when CONFIG names a network (a library name or a network file).

A network file is a YAML/TOML mapping with ``engines``, ``classes`` and ``workflows``
(``docs/networks.md``); a scenario file (one engine) has none of ``classes``/``workflows``.
Loads of a network are fractions of its capacity-region boundary: ``--load 0.9`` scales every
arrival rate to ``0.9 * theta*`` times the file's rates, ``theta*`` from the static planning LP.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from policyopt.batch_cap import caps_table, smallest_caps
from policyopt.errors import SpecError
from policyopt.jsonout import to_json
from policyopt.model.config import read_mapping
from policyopt.model.network import NetworkSpec, load_network
from policyopt.model.networks_library import NETWORKS, get_network
from policyopt.outdir import compare_out, simulate_out
from policyopt.report import CsvAppender, format_table, save_figure, write_csv
from policyopt.sim.network_sim import NetworkResult, NetworkSimulator
from policyopt.sim.run import check_run_size, expected_requests
from policyopt.sweep import RunsInterrupted, horizon_bar, make_backend, run_all

DEFAULT_POLICIES = ("fcfs", "priority:exit", "priority:entry", "max-pressure", "fluid")
DEFAULT_NETWORK_HORIZON_S = 7200.0
DEFAULT_NETWORK_LOAD = 0.9
"""The load (x theta*) of ``compare NETWORK`` without ``--loads``."""
DEFAULT_NETWORK_OUT = Path("policyopt-results") / "compare"
"""``compare NETWORK`` writes to ``policyopt-results/compare-NAME`` without ``--out``."""


def network_arg(config: str | None) -> NetworkSpec | None:
    """The network CONFIG names, or ``None`` when CONFIG is a single-engine scenario (or absent)."""
    if config is None:
        return None
    path = Path(config)
    if path.is_dir():
        raise SpecError(
            config,
            "is a directory, not a file",
            "give a scenario or network file, or a library network (policyopt networks)",
        )
    if path.is_file():
        data = read_mapping(path)
        if "workflows" in data or "engines" in data:  # (a scenario may have classes)
            return load_network(path)
        return None
    if path.suffix.lower() in (".yaml", ".yml", ".toml") or "/" in config:
        return None  # a missing file: the scenario loader says so
    return get_network(config)


def cmd_networks(args: argparse.Namespace) -> int:
    """``policyopt networks``: the library of named networks."""
    if args.json:
        print(to_json([{"name": n, "description": d} for n, d in NETWORKS]))
        return 0
    width = max(len(n) for n, _ in NETWORKS)
    for name, desc in NETWORKS:
        print(f"{name:<{width}}  {desc}")
    print("\nuse a name (or a network file) as CONFIG of capacity, simulate and compare")
    return 0


def network_capacity(net: NetworkSpec, args: argparse.Namespace) -> int:
    """Traffic equations, nominal loads and the static planning LP of a network."""
    from policyopt.solvers.peaks import peak_overloads
    from policyopt.solvers.static_planning import static_plan
    from policyopt.solvers.traffic import traffic

    flow = traffic(net)
    plan = static_plan(net)
    peaks = peak_overloads(net)
    # the smallest batches that carry the load; none outside the capacity region (no room)
    room = plan.theta >= 1
    caps = {c.engine: c for c in smallest_caps(net) if c is not None} if room else {}
    if args.json:
        print(
            to_json(
                {
                    "network": net.name,
                    "classes": {
                        c: {"rate": flow.rates[k], "work": flow.work[k]}
                        for k, c in enumerate(flow.classes)
                    },
                    "engines": {
                        e: {
                            "mu": flow.mu[j],
                            "nominal_load": flow.loads[j],
                            **(
                                {"smallest_batch": dataclasses.asdict(caps[e])} if e in caps else {}
                            ),
                        }
                        for j, e in enumerate(flow.engines)
                    },
                    "theta": plan.theta,
                    "utilization": plan.utilization,
                    "duals": plan.duals,
                    "bottlenecks": list(plan.bottlenecks),
                    **({"peak_overloads": [dataclasses.asdict(p) for p in peaks]} if peaks else {}),
                    **_memory_json(plan),
                }
            )
        )
        return 0
    print(f"network {net.name}: {net.description}".rstrip(": "))
    print()
    print(flow.table())
    print()
    print(plan.table())
    for peak in peaks:
        print(peak.text())
    if caps:
        print()
        print(caps_table(list(caps.values())))
    if not plan.kv_capacity:
        print(
            f"\nthe arrival rates can grow by a factor {plan.theta:.4g} before some engine "
            f"saturates; bottleneck: {', '.join(plan.bottlenecks)}"
        )
        return 0
    limits = [f"{e} (tokens)" for e in plan.bottlenecks]
    limits += [f"{e} (KV cache)" for e in plan.kv_bottlenecks]
    print(
        f"\nthe arrival rates can grow by a factor {plan.theta:.4g} before some engine "
        f"saturates or fills its KV cache; bottleneck: {', '.join(limits)}"
    )
    return 0


def _memory_json(plan: Any) -> dict[str, Any]:
    """The ``memory`` entry of ``capacity NETWORK --json`` (none without a KV cache): per
    engine with a KV cache, ``M``, the mean KV in use at the nominal rates, the memory
    constraint's dual and share, and whether it binds."""
    if not plan.kv_capacity:
        return {}
    return {
        "memory": {
            e: {
                "kv_capacity": plan.kv_capacity[e],
                "kv_in_use": plan.kv_in_use[e],
                "dual": plan.kv_duals[e],
                "share": plan.kv_shares[e],
                "binds": e in plan.kv_bottlenecks,
            }
            for e in plan.kv_capacity
        }
    }


def _scaled(net: NetworkSpec, load: float | None) -> tuple[NetworkSpec, float]:
    """The network at ``load`` x its LP boundary (``None``: as written), and the factor."""
    if load is None:
        return net, 1.0
    from policyopt.solvers.static_planning import static_plan

    factor = load * static_plan(net).theta
    return net.scaled(factor), factor


def _total_rate(net: NetworkSpec) -> float:
    """The sum of the workflows' arrival rates, requests/s."""
    return math.fsum(net.workflow_rates().values())


def _run(
    net: NetworkSpec, policy: str, horizon: float, seed: int, label: str, args: Any
) -> NetworkResult:
    """One run with a progress bar over simulated time (see :func:`horizon_bar`), with the
    warm-up and samples of a scenario's run when ``args`` carries them (:func:`_run_options`)."""
    bar = horizon_bar(horizon, label)
    try:
        sim = NetworkSimulator(net, policy, horizon=horizon, seed=seed, **_run_options(args))
        sim.run(lambda t: bar.update(max(0.0, min(t, horizon) - bar.n)), keep_jobs=False)
        return sim.result()
    finally:
        bar.close()


def _run_options(args: Any) -> dict[str, Any]:
    """``warmup`` (s) and ``samples`` of a scenario with request classes, set on ``args`` by
    the command that turned it into a network; nothing for a network file (its defaults)."""
    return {k: getattr(args, k) for k in ("warmup", "samples") if hasattr(args, k)}


@dataclass(frozen=True)
class NetworkRun:
    """One run of ``compare NETWORK``: the network already scaled to ``load`` x its LP
    boundary, a policy name, the horizon (simulated s), the seed, and other simulator
    options (:func:`_run_options`)."""

    net: NetworkSpec
    policy: str
    load: float
    horizon: float
    seed: int
    options: tuple[tuple[str, Any], ...] = ()


def simulate_run(run: NetworkRun) -> NetworkResult:
    """The result of one :class:`NetworkRun` (a top-level function: runs in a process pool)."""
    sim = NetworkSimulator(
        run.net, run.policy, horizon=run.horizon, seed=run.seed, **dict(run.options)
    )
    return sim.run(keep_jobs=False).result()


def _row(res: NetworkResult, load: float | None) -> dict[str, Any]:
    """One row of the compare table, CSV and JSON: rounded key numbers of a run."""
    flows = list(res.workflows.values())
    return {
        "policy": res.policy,
        "load_x_boundary": "" if load is None else load,
        "mean_jobs": round(res.mean_jobs, 2),
        "mean_jobs_low": round(res.mean_jobs_ci[0], 2),
        "mean_jobs_high": round(res.mean_jobs_ci[1], 2),
        "holding_cost": round(res.holding_cost, 2),
        "jobs_drift": round(res.jobs_drift, 4),
        "jobs_drift_low": round(res.jobs_drift_ci[0], 4),
        "jobs_drift_high": round(res.jobs_drift_ci[1], 4),
        "throughput_over_rate": round(min(f["throughput"] / f["rate"] for f in flows), 4),
        "latency_mean_s": round(float(np.mean([f["latency_mean"] for f in flows])), 3),
        "verdict": res.verdict,
    }


NETWORK_COLUMNS = (
    "policy",
    "load",
    "mean jobs [95% CI]",
    "holding cost",
    "jobs drift/s [95% CI]",
    "min thr/rate",
    "latency s",
    "verdict",
)
"""Headers of the network compare table (and of ``simulate NETWORK``'s one-row table)."""


def _table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`_row` as a left-aligned text table (:func:`format_table`)."""
    body = [
        [
            r["policy"],
            f"{r['load_x_boundary']}",
            f"{r['mean_jobs']:.1f} [{r['mean_jobs_low']:.1f}, {r['mean_jobs_high']:.1f}]",
            f"{r['holding_cost']:.1f}",
            f"{r['jobs_drift']:.3f} [{r['jobs_drift_low']:.3f}, {r['jobs_drift_high']:.3f}]",
            f"{r['throughput_over_rate']:.3f}",
            f"{r['latency_mean_s']:.2f}",
            r["verdict"],
        ]
        for r in rows
    ]
    return format_table(NETWORK_COLUMNS, body, align="l" * len(NETWORK_COLUMNS))


def _plot(results: list[tuple[str, NetworkResult]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, res in results:
        ax.plot(res.series["t"], res.series["jobs"], label=label)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("jobs in system")
    ax.set_yscale("symlog", linthresh=100)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _memory_line(e: dict[str, float | str]) -> str:
    """One engine's KV-cache metrics (a limited cache) in words."""
    share = float(e["preempted_share"])
    return (
        f"KV cache {int(e['mem_capacity']):,} tokens: mean {float(e['mem_mean']):,.0f} "
        f"allocated, most {int(e['mem_max']):,}; {int(e['preemptions']):,} preemptions, "
        f"{int(e['recomputed_tokens']):,} tokens recomputed, {int(e['swapped_tokens']):,} "
        "swapped; "
        + (f"{share:.1%} of requests preempted" if math.isfinite(share) else "none completed")
        + f" (at most {int(e['preemptions_max'])} times)"
    )


def network_simulate(net: NetworkSpec, args: argparse.Namespace) -> int:
    """One network run under one policy."""
    if args.rate is not None:
        raise SpecError("--rate", "a network has one rate per workflow", "use --load X instead")
    if args.scheduler is not None:
        raise SpecError(
            "--scheduler", "a network's schedulers are set per engine in its file", "drop it"
        )
    net, factor = _scaled(net, args.load)
    horizon = args.horizon or DEFAULT_NETWORK_HORIZON_S
    policy = args.policy or "fcfs"
    check_run_size(
        expected_requests(net.workflow_rates().values(), horizon),
        f"the workflows' rates ({_total_rate(net):.4g} requests/s in all) x horizon {horizon:g} s",
        force=args.force,
    )
    out = simulate_out(args.out, None, overwrite=args.overwrite)
    res = _run(net, policy, horizon, args.seed or 0, f"{net.name} {policy}", args)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(to_json(res.summary()))
        _plot([(policy, res)], out / "jobs.png", f"{net.name}, {policy}")
    if args.json:
        print(to_json(res.summary()))
        return 0
    print(
        f"network {net.name}, policy {policy}, horizon {horizon:g} s, seed {res.seed}"
        + (f", rates x{factor:.4g}" if args.load is not None else "")
    )
    print(_table([_row(res, args.load)]))
    print("\nengines:")
    for name, e in res.engines.items():
        print(
            f"  {name}: nominal load {float(e['nominal_load']):.3f}, utilization "
            f"{float(e['utilization']):.3f}, backlog drift {float(e['drift']):.1f} "
            f"[{float(e['drift_low']):.1f}, {float(e['drift_high']):.1f}], {e['verdict']}"
        )
        if "mem_capacity" in e:
            print(f"    {_memory_line(e)}")
    print("workflows:")
    for name, w in res.workflows.items():
        print(
            f"  {name}: rate {w['rate']:.3f}/s, throughput {w['throughput']:.3f} "
            f"[{w['throughput_low']:.3f}, {w['throughput_high']:.3f}], latency mean "
            f"{w['latency_mean']:.2f} s, p99 {w['latency_p99']:.2f} s"
        )
    print("classes (time in the class; TTFT: to the end of the first decode batch):")
    for name, c in res.classes.items():
        ttft = (
            f", TTFT mean {c['ttft_mean']:.2f} s, p99 {c['ttft_p99']:.2f} s"
            if math.isfinite(c["ttft_mean"])
            else ""
        )
        print(
            f"  {name}: mean jobs {c['mean_jobs']:.2f}, throughput {c['throughput']:.3f}/s, "
            f"latency mean {c['latency_mean']:.2f} s, p99 {c['latency_p99']:.2f} s{ttft}"
        )
    if out is not None:
        print(f"wrote {out / 'summary.json'} and {out / 'jobs.png'}", file=sys.stderr)
    return 0


def network_compare(net: NetworkSpec, args: argparse.Namespace) -> int:
    """Policies x loads on one network: a table, a CSV, a JSON and a figure.

    The runs go through :func:`policyopt.sweep.run_all` (``--jobs`` processes, or
    ``--backend ray``: the same numbers either way; ``--no-progress``). A run that raises is
    reported and the others go on (exit code 1); Ctrl-C keeps the finished runs in the files
    (exit code 130).
    """
    policies = args.policies or list(DEFAULT_POLICIES)
    loads = args.loads or [DEFAULT_NETWORK_LOAD]
    horizon = args.horizon or DEFAULT_NETWORK_HORIZON_S
    seed = args.seed or 0
    from policyopt.policies import make_policy

    for p in policies:
        make_policy(p).bind(net)  # every bad policy name before anything runs
    backend = make_backend(args.backend, args.jobs, args.ray_address)
    scaled = {load: _scaled(net, load)[0] for load in loads}
    options = tuple(_run_options(args).items())
    runs = [NetworkRun(scaled[x], p, x, horizon, seed, options) for x in loads for p in policies]
    check_run_size(
        math.fsum(expected_requests(r.net.workflow_rates().values(), horizon) for r in runs),
        f"{len(runs)} runs at loads up to {max(loads):g} x theta* (up to "
        f"{max(_total_rate(n) for n in scaled.values()):.4g} requests/s) x horizon "
        f"{horizon:g} s",
        force=args.force,
    )
    default = DEFAULT_NETWORK_OUT.with_name(f"{DEFAULT_NETWORK_OUT.name}-{net.name}")
    out, note = compare_out(args.out, default, overwrite=args.overwrite)
    if note:
        print(note, file=sys.stderr if args.json else sys.stdout, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    appender = CsvAppender(out / "compare.csv")

    def failed(index: int, error: str) -> None:
        run = runs[index]
        tqdm.write(
            f"policyopt: warning: run {run.policy} at load {run.load:g} failed: {error}",
            file=sys.stderr,
        )

    code = 0
    try:
        outcome = run_all(
            runs,
            simulate_run,
            backend=backend,
            progress=not args.no_progress,
            label=lambda run: f"{run.policy} x{run.load:g}",
            on_result=lambda i, res: appender.write(_row(res, runs[i].load)),
            on_error=failed,
        )
    except RunsInterrupted as stop:
        outcome, code = stop.outcome, 130
    finally:
        appender.close()
    done = [(runs[i], res) for i, res in outcome.results.items()]
    rows = [_row(res, run.load) for run, res in done]
    written: list[Path] = []
    if rows:  # again, in plan order (a pool appends in completion order)
        written.append(write_csv(out / "compare.csv", rows))
    extra: dict[str, Any] = {}
    if outcome.errors:
        extra["failures"] = [
            {"policy": runs[i].policy, "load": runs[i].load, "error": error}
            for i, error in outcome.errors.items()
        ]
        code = code or 1
    if not outcome.complete:
        extra["complete"] = False
    (out / "compare.json").write_text(to_json({"network": net.name, "runs": rows, **extra}))
    written.append(out / "compare.json")
    if done:
        labelled = [(f"{run.policy} x{run.load:g}", res) for run, res in done]
        written.append(_plot(labelled, out / "jobs.png", f"{net.name}: jobs in system"))
    if args.json:
        doc = {"network": net.name, "horizon": horizon, "seed": seed, "runs": rows, **extra}
        print(to_json(doc))
    else:
        print(f"network {net.name}, horizon {horizon:g} s, seed {seed} (same arrivals for all)")
        print(_table(rows))
    for i, error in outcome.errors.items():
        print(f"failed: {runs[i].policy} at load {runs[i].load:g}: {error}", file=sys.stderr)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if code == 130:
        print(
            f"policyopt: interrupted after {len(rows)} of {len(runs)} runs; kept them in {out}",
            file=sys.stderr,
        )
    return code
