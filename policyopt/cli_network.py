"""The network side of the command line: ``policyopt networks`` and ``capacity`` /
``simulate`` / ``compare`` when CONFIG names a network (a library name or a network file).

A network file is a YAML/TOML mapping with ``engines``, ``classes`` and ``workflows``
(``docs/networks.md``); a scenario file (one engine) has none of ``classes``/``workflows``.
Loads of a network are fractions of its capacity-region boundary: ``--load 0.9`` scales every
arrival rate to ``0.9 * theta*`` times the file's rates, ``theta*`` from the static planning LP.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from policyopt.errors import SpecError
from policyopt.model.config import read_mapping
from policyopt.model.network import NetworkSpec, load_network
from policyopt.model.networks_library import NETWORKS, get_network
from policyopt.sim.network_sim import NetworkResult, NetworkSimulator

DEFAULT_POLICIES = ("fcfs", "priority:exit", "priority:entry", "max-pressure", "fluid")
DEFAULT_NETWORK_HORIZON_S = 7200.0


def network_arg(config: str | None) -> NetworkSpec | None:
    """The network CONFIG names, or ``None`` when CONFIG is a single-engine scenario (or absent)."""
    if config is None:
        return None
    path = Path(config)
    if path.is_file():
        data = read_mapping(path)
        if "classes" in data or "workflows" in data:
            return load_network(path)
        return None
    if path.suffix.lower() in (".yaml", ".yml", ".toml") or "/" in config:
        return None  # a missing file: the scenario loader says so
    return get_network(config)


def _to_json(data: Any) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (np.floating, float)):
            return None if not math.isfinite(float(v)) else float(v)
        if isinstance(v, np.integer):
            return int(v)
        return v

    return json.dumps(clean(data), indent=2)


def cmd_networks(args: argparse.Namespace) -> int:
    """``policyopt networks``: the library of named networks."""
    if args.json:
        print(_to_json([{"name": n, "description": d} for n, d in NETWORKS]))
        return 0
    width = max(len(n) for n, _ in NETWORKS)
    for name, desc in NETWORKS:
        print(f"{name:<{width}}  {desc}")
    print("\nuse a name (or a network file) as CONFIG of capacity, simulate and compare")
    return 0


def network_capacity(net: NetworkSpec, args: argparse.Namespace) -> int:
    """Traffic equations, nominal loads and the static planning LP of a network."""
    from policyopt.solvers.static_planning import static_plan
    from policyopt.solvers.traffic import traffic

    flow = traffic(net)
    plan = static_plan(net)
    if args.json:
        print(
            _to_json(
                {
                    "network": net.name,
                    "classes": {
                        c: {"rate": flow.rates[k], "work": flow.work[k]}
                        for k, c in enumerate(flow.classes)
                    },
                    "engines": {
                        e: {"mu": flow.mu[j], "nominal_load": flow.loads[j]}
                        for j, e in enumerate(flow.engines)
                    },
                    "theta": plan.theta,
                    "utilization": plan.utilization,
                    "duals": plan.duals,
                    "bottlenecks": list(plan.bottlenecks),
                }
            )
        )
        return 0
    print(f"network {net.name}: {net.description}".rstrip(": "))
    print()
    print(flow.table())
    print()
    print(plan.table())
    print(
        f"\nthe arrival rates can grow by a factor {plan.theta:.4g} before some engine "
        f"saturates; bottleneck: {', '.join(plan.bottlenecks)}"
    )
    return 0


def _scaled(net: NetworkSpec, load: float | None) -> tuple[NetworkSpec, float]:
    """The network at ``load`` x its LP boundary (``None``: as written), and the factor."""
    if load is None:
        return net, 1.0
    from policyopt.solvers.static_planning import static_plan

    factor = load * static_plan(net).theta
    return net.scaled(factor), factor


def _run(net: NetworkSpec, policy: str, horizon: float, seed: int, label: str) -> NetworkResult:
    bar = tqdm(
        total=horizon,
        desc=label,
        disable=not sys.stderr.isatty(),
        delay=1.0,
        file=sys.stderr,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} simulated s [{elapsed}<{remaining}]",
    )
    try:
        sim = NetworkSimulator(net, policy, horizon=horizon, seed=seed)
        sim.run(progress=lambda t: bar.update(max(0.0, min(t, horizon) - bar.n)))
        return sim.result()
    finally:
        bar.close()


def _row(res: NetworkResult, load: float | None) -> dict[str, Any]:
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


def _table(rows: list[dict[str, Any]]) -> str:
    heads = [
        "policy",
        "load",
        "mean jobs [95% CI]",
        "holding cost",
        "jobs drift/s [95% CI]",
        "min thr/rate",
        "latency s",
        "verdict",
    ]
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
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    res = _run(net, policy, horizon, args.seed or 0, f"{net.name} {policy}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(_to_json(res.summary()))
        _plot([(policy, res)], out / "jobs.png", f"{net.name}, {policy}")
    if args.json:
        print(_to_json(res.summary()))
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
    print("workflows:")
    for name, w in res.workflows.items():
        print(
            f"  {name}: rate {w['rate']:.3f}/s, throughput {w['throughput']:.3f} "
            f"[{w['throughput_low']:.3f}, {w['throughput_high']:.3f}], latency mean "
            f"{w['latency_mean']:.2f} s, p99 {w['latency_p99']:.2f} s"
        )
    if args.out:
        print(
            f"wrote {Path(args.out) / 'summary.json'} and {Path(args.out) / 'jobs.png'}",
            file=sys.stderr,
        )
    return 0


def network_compare(net: NetworkSpec, args: argparse.Namespace) -> int:
    """Policies x loads on one network: a table, a CSV, a JSON and a figure."""
    policies = args.policies or list(DEFAULT_POLICIES)
    loads = args.loads or [0.9]
    horizon = args.horizon or DEFAULT_NETWORK_HORIZON_S
    seed = args.seed or 0
    from policyopt.policies import make_policy

    for p in policies:
        make_policy(p).bind(net)  # every bad policy name before anything runs
    out = Path(
        args.out
        if args.out != "policyopt-results/compare"
        else f"policyopt-results/compare-{net.name}"
    )
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    results: list[tuple[str, NetworkResult]] = []
    csv_path = out / "compare.csv"
    with csv_path.open("w", newline="") as fh:
        writer: csv.DictWriter | None = None
        try:
            for load in loads:
                scaled, _ = _scaled(net, load)
                for policy in policies:
                    res = _run(scaled, policy, horizon, seed, f"{policy} x{load:g}")
                    row = _row(res, load)
                    rows.append(row)
                    results.append((f"{policy} x{load:g}", res))
                    if writer is None:
                        writer = csv.DictWriter(fh, fieldnames=list(row))
                        writer.writeheader()
                    writer.writerow(row)
                    fh.flush()
        except KeyboardInterrupt:
            print(f"policyopt: interrupted; kept {len(rows)} runs in {csv_path}", file=sys.stderr)
            return 130
    (out / "compare.json").write_text(_to_json({"network": net.name, "runs": rows}))
    _plot(results, out / "jobs.png", f"{net.name}: jobs in system")
    if args.json:
        print(_to_json({"network": net.name, "horizon": horizon, "seed": seed, "runs": rows}))
    else:
        print(f"network {net.name}, horizon {horizon:g} s, seed {seed} (same arrivals for all)")
        print(_table(rows))
    for name in ("compare.csv", "compare.json", "jobs.png"):
        print(f"wrote {out / name}", file=sys.stderr)
    return 0
