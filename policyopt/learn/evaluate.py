"""Judge policies, designed or learned, by the same numbers (``policyopt evaluate``).

:func:`evaluate` simulates every policy at every load with every seed of one seed list, so all
policies see the same arrivals and the same job sizes (common random numbers: a seed fixes
the simulator's random streams, and those streams do not depend on the decisions). Each run
reports the simulator's :class:`~policyopt.sim.network_sim.NetworkResult`: the long-run
average holding cost (per second) and mean number in system over ``[warmup, horizon]`` with
its 95% batch-means interval (20 windows), the mean workflow latency (s), and the stability
verdict. Across seeds, the table gives the mean over seeds and a 95% t-interval over seeds
(with one seed, the run's own batch-means interval), and the verdict ``stable`` only when
every seed's run is stable.

The runs go through :func:`policyopt.sweep.run_all`, one after the other in this process (or
on another backend: ``--jobs``, ``--backend ray``; the same numbers either way): a
run that raises is recorded in :attr:`Evaluation.failures` and the others go on; Ctrl-C
raises :class:`EvaluationInterrupted` with the runs that had finished (and their files
written when ``out`` is given).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policyopt.errors import SpecError
from policyopt.jsonout import json_ready, to_json
from policyopt.model.network import NetworkSpec
from policyopt.model.networks_library import resolve_network
from policyopt.policies import Policy, make_policy
from policyopt.report import format_table
from policyopt.sim.network_sim import NetworkResult, NetworkSimulator
from policyopt.sim.stats import t_interval
from policyopt.sweep import Backend, Outcome, RunsInterrupted, run_all

DEFAULT_EVAL_POLICIES = ("max-pressure", "priority:exit", "priority:entry", "fluid")
DEFAULT_EVAL_HORIZON_S = 3600.0
"""Default horizon of ``policyopt evaluate``, simulated seconds."""

RUN_FIELDS = (
    "policy",
    "load",
    "seed",
    "holding_cost",
    "mean_jobs",
    "mean_jobs_low",
    "mean_jobs_high",
    "latency_mean_s",
    "jobs_drift",
    "verdict",
    "wall_s",
)


@dataclass
class Evaluation:
    """The runs of :func:`evaluate` (one row per policy, load and seed) and their summary (one
    row per policy and load, over the seeds that finished). ``failures`` has one row per run
    that raised (policy, load, seed, error); ``complete`` is false after an interrupt."""

    network: str
    horizon: float
    warmup: float | None
    seeds: list[int]
    loads: list[float | None]
    policies: list[str]
    runs: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (:func:`~policyopt.jsonout.json_ready`: non-finite numbers as ``None``);
        ``failures`` and ``complete`` appear only when a run failed or the runs were cut
        short."""
        data: dict[str, Any] = {
            "network": self.network,
            "horizon": self.horizon,
            "warmup": self.warmup,
            "seeds": self.seeds,
            "loads": self.loads,
            "policies": self.policies,
            "summary": self.summary,
            "runs": [{k: v for k, v in r.items() if k != "wall_s"} for r in self.runs],
        }
        if self.failures:
            data["failures"] = self.failures
        if not self.complete:
            data["complete"] = False
        return json_ready(data)

    def table(self) -> str:
        """The summary as a left-aligned text table (:func:`policyopt.report.format_table`)."""
        heads = ["policy", "load", "holding cost/s [95% CI]", "mean jobs [95% CI]", "latency s"]
        heads.append("verdict")
        body = [
            [
                r["policy"],
                "as given" if r["load"] is None else f"{r['load']:g}",
                f"{r['holding_cost']:.2f} [{r['holding_cost_low']:.2f}, "
                f"{r['holding_cost_high']:.2f}]",
                f"{r['mean_jobs']:.2f} [{r['mean_jobs_low']:.2f}, {r['mean_jobs_high']:.2f}]",
                f"{r['latency_mean_s']:.3f}",
                r["verdict"],
            ]
            for r in self.summary
        ]
        return format_table(heads, body, align="l" * len(heads))


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`evaluate`; ``evaluation`` holds the runs that had finished."""

    def __init__(self, evaluation: Evaluation) -> None:
        super().__init__("evaluation interrupted")
        self.evaluation = evaluation


@dataclass(frozen=True)
class EvalRun:
    """One run of :func:`evaluate`: a policy under its name on the network at one load, with
    one seed; horizon and warm-up in simulated seconds. The policy is built once and shared
    by its runs in this process, or sent by name to the workers of another backend (a trained
    agent ``ppo:DIR`` is then loaded there: ``DIR`` must be visible to them)."""

    net: NetworkSpec
    policy: Policy | str
    name: str
    load: float | None
    seed: int
    horizon: float
    warmup: float | None


def evaluate_run(run: EvalRun) -> dict[str, Any]:
    """Simulate one :class:`EvalRun`; its row of ``evaluate.csv`` (with the wall seconds)."""
    t0 = time.perf_counter()
    sim = NetworkSimulator(
        run.net, run.policy, horizon=run.horizon, warmup=run.warmup, seed=run.seed
    )
    res = sim.run(keep_jobs=False).result()
    return _run_row(res, run.name, run.load, time.perf_counter() - t0)


def _scaled(net: NetworkSpec, load: float | None) -> NetworkSpec:
    if load is None:
        return net
    from policyopt.solvers.static_planning import static_plan

    return net.scaled(load * static_plan(net).theta)


def _run_row(res: NetworkResult, policy: str, load: float | None, wall: float) -> dict[str, Any]:
    lat = [w["latency_mean"] for w in res.workflows.values()]
    lat = [x for x in lat if math.isfinite(x)]
    return {
        "policy": policy,
        "load": load,
        "seed": res.seed,
        "holding_cost": res.holding_cost,
        "mean_jobs": res.mean_jobs,
        "mean_jobs_low": res.mean_jobs_ci[0],
        "mean_jobs_high": res.mean_jobs_ci[1],
        "latency_mean_s": float(np.mean(lat)) if lat else math.nan,
        "jobs_drift": res.jobs_drift,
        "verdict": res.verdict,
        "wall_s": round(wall, 3),
    }


def _summary_row(policy: str, load: float | None, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary row: the runs ``rows`` of one policy and load (one per seed) combined."""

    def across(key: str) -> tuple[float, float, float]:
        x = np.array([r[key] for r in rows], dtype=float)
        if len(x) >= 2:
            mean, lo, hi = t_interval(x)
            return float(mean), float(lo), float(hi)
        return float(x[0]), math.nan, math.nan

    hc, hc_lo, hc_hi = across("holding_cost")
    mj, mj_lo, mj_hi = across("mean_jobs")
    if len(rows) == 1:  # one seed: the run's batch-means interval
        mj_lo, mj_hi = rows[0]["mean_jobs_low"], rows[0]["mean_jobs_high"]
        first = rows[0]
        scale = first["holding_cost"] / first["mean_jobs"] if first["mean_jobs"] else 0.0
        hc_lo, hc_hi = mj_lo * scale, mj_hi * scale
    verdicts = {r["verdict"] for r in rows}
    verdict = (
        "stable"
        if verdicts == {"stable"}
        else ("unstable" if "unstable" in verdicts else "inconclusive")
    )
    return {
        "policy": policy,
        "load": load,
        "seeds": len(rows),
        "holding_cost": hc,
        "holding_cost_low": hc_lo,
        "holding_cost_high": hc_hi,
        "mean_jobs": mj,
        "mean_jobs_low": mj_lo,
        "mean_jobs_high": mj_hi,
        "latency_mean_s": float(np.nanmean([r["latency_mean_s"] for r in rows])),
        "verdict": verdict,
        "verdicts": ",".join(r["verdict"] for r in rows),
    }


def evaluate(
    network: str | Path | NetworkSpec,
    policies: Sequence[str | Policy] = DEFAULT_EVAL_POLICIES,
    loads: Sequence[float | None] = (None,),
    seeds: Sequence[int] = (0, 1, 2),
    horizon: float = DEFAULT_EVAL_HORIZON_S,
    warmup: float | None = None,
    out: str | Path | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    backend: Backend | None = None,
) -> Evaluation:
    """Every policy x load x seed on ``network``; see the module docstring.

    ``loads``: fractions of the LP capacity boundary (``None``: the network's own rates);
    ``seeds``: the common seed list; ``horizon``/``warmup``: simulated seconds (warmup default
    a tenth of the horizon); ``out``: a directory for ``evaluate.csv`` (one row per run),
    ``evaluate.json`` and ``evaluate.png``; ``on_run``: called with each run's row. Policies
    are built (and trained agents loaded) once and bound before each run. Bad input raises
    :class:`SpecError` before any run. A run that raises goes to ``failures`` (one line) and
    the others go on; Ctrl-C raises :class:`EvaluationInterrupted` carrying the finished runs
    (written to ``out`` first, when some finished). ``backend``
    (:func:`~policyopt.sweep.make_backend`): where the runs go (default: one after the other
    here); elsewhere, policies given by name are sent by name.
    """
    if not (isinstance(horizon, (int, float)) and math.isfinite(horizon) and horizon > 0):
        raise SpecError("--horizon", f"must be a positive number of seconds, got {horizon!r}", "")
    if not seeds:
        raise SpecError("--seeds", "give at least one seed", "e.g. --seeds 0,1,2")
    for x in seeds:
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0:
            raise SpecError("--seeds", f"a seed must be a whole number >= 0, got {x!r}", "")
    if not policies:
        raise SpecError("--policies", "give at least one policy", "e.g. --policies max-pressure")
    for x in loads:
        if x is not None and not (math.isfinite(x) and x > 0):
            raise SpecError("--loads", f"a load must be > 0, got {x!r}", "")
    if out is not None:
        for place in (Path(out), *Path(out).parents):
            if place.exists() and not place.is_dir():
                where = "is a file" if place == Path(out) else f"is inside {str(place)!r}, a file"
                raise SpecError("--out", f"{str(out)!r} {where}", "give a directory")
    net = resolve_network(network)
    built = [make_policy(p) for p in policies]
    names = [p if isinstance(p, str) else b.name for p, b in zip(policies, built, strict=True)]
    nets = {x: _scaled(net, x) for x in loads}
    for b in built:
        b.bind(nets[loads[0]])  # every unusable policy before anything runs
    ev = Evaluation(net.name, float(horizon), warmup, [int(s) for s in seeds], list(loads), names)
    here = backend is None or (backend.kind == "local" and backend.jobs == 1)
    sent = [
        b if here or not isinstance(p, str) else p for p, b in zip(policies, built, strict=True)
    ]
    runs = [
        EvalRun(nets[load], policy, name, load, int(seed), float(horizon), warmup)
        for load in loads
        for name, policy in zip(names, sent, strict=True)
        for seed in seeds
    ]
    on_result = None if on_run is None else lambda _, row: on_run(row)
    try:
        outcome = run_all(runs, evaluate_run, progress=False, on_result=on_result, backend=backend)
    except RunsInterrupted as stop:
        _fill(ev, runs, stop.outcome)
        if out is not None and ev.runs:
            write_evaluation(ev, Path(out))
        raise EvaluationInterrupted(ev) from None
    _fill(ev, runs, outcome)
    if out is not None:
        write_evaluation(ev, Path(out))
    return ev


def _fill(ev: Evaluation, runs: list[EvalRun], outcome: Outcome[dict[str, Any]]) -> None:
    """Put the finished runs, the failures and one summary row per (load, policy) with a
    finished run into ``ev`` (``runs`` go seed by seed within each load and policy)."""
    per_group = len(ev.seeds)
    ev.runs = [outcome.results[i] for i in sorted(outcome.results)]  # plan order, however run
    ev.failures = [
        {"policy": runs[i].name, "load": runs[i].load, "seed": runs[i].seed, "error": error}
        for i, error in sorted(outcome.errors.items())
    ]
    ev.complete = outcome.complete
    ev.summary = []
    for first in range(0, len(runs), per_group):
        rows = [outcome.results[i] for i in range(first, first + per_group) if i in outcome.results]
        if rows:
            ev.summary.append(_summary_row(runs[first].name, runs[first].load, rows))


def write_evaluation(ev: Evaluation, out: Path) -> list[Path]:
    """``evaluate.csv`` (runs), ``summary.csv``, ``evaluate.json`` and ``evaluate.png``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows, fields in (
        ("evaluate.csv", ev.runs, RUN_FIELDS),
        ("summary.csv", ev.summary, tuple(ev.summary[0]) if ev.summary else ()),
    ):
        path = out / name
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(fields))
            w.writeheader()
            for r in rows:
                w.writerow({k: "" if r[k] is None else r[k] for k in fields})
        paths.append(path)
    path = out / "evaluate.json"
    path.write_text(to_json(ev.to_dict()))
    paths.append(path)
    paths.append(plot_evaluation(ev, out / "evaluate.png"))
    return paths


def plot_evaluation(ev: Evaluation, path: Path) -> Path:
    """Bars of the mean number in system per policy (groups: loads) with 95% intervals;
    unstable policies hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(ev.policies) * len(ev.loads)), 4.5))
    width = 0.8 / max(1, len(ev.policies))
    for i, policy in enumerate(ev.policies):
        rows = [r for r in ev.summary if r["policy"] == policy]
        x = np.arange(len(rows)) + i * width
        y = np.array([r["mean_jobs"] for r in rows])
        lo = np.array([r["mean_jobs_low"] for r in rows])
        hi = np.array([r["mean_jobs_high"] for r in rows])
        err = np.vstack([np.nan_to_num(y - lo), np.nan_to_num(hi - y)])
        bars = ax.bar(x, y, width, yerr=err, capsize=3, label=policy)
        for bar, r in zip(bars, rows, strict=True):
            if r["verdict"] != "stable":
                bar.set_hatch("//")
    ax.set_xticks(np.arange(len(ev.loads)) + width * (len(ev.policies) - 1) / 2)
    ax.set_xticklabels(["as given" if x is None else f"load {x:g}" for x in ev.loads])
    ax.set_ylabel("mean jobs in system")
    ax.set_yscale("log")
    ax.set_title(
        f"{ev.network}: {len(ev.seeds)} seeds, horizon {ev.horizon:g} s (hatched: not stable)"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
