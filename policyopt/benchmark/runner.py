"""Run a benchmark: instances x policies x seeds through the one sweep runner, then one cell
per instance and policy (``docs/benchmark.md``).

:func:`plan` lists the :class:`BenchmarkRun` s; :func:`run_one` (top level, so that a process
pool can run it) simulates one and keeps a :class:`RunOutcome`; :func:`aggregate` pools the
runs of each instance and policy into a :class:`Cell`: the mean number in system with a 95%
interval from the batch means of all its seeds pooled
(:func:`~policyopt.sim.stats.pooled_interval`: 20 windows per run, independent seeds), the
verdicts, Little's law, and the instance's reference values for that policy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from policyopt.benchmark.instances import Instance, Reference, get_instance
from policyopt.sim.network_sim import NetworkSimulator
from policyopt.sim.stats import pooled_interval


@dataclass(frozen=True)
class BenchmarkRun:
    """One run: an instance name, a policy name, a seed, the horizon and warm-up (simulated
    seconds; warm-up ``None``: a tenth of the horizon)."""

    instance: str
    policy: str
    seed: int
    horizon: float
    warmup: float | None = None


@dataclass(frozen=True)
class RunOutcome:
    """What one run keeps: mean jobs in system with its batch-means interval and windows, the
    stability verdict, Little's law gap, the class visits simulated, and its wall and CPU
    time (s; on a shared machine the wall time includes waiting for a core)."""

    run: BenchmarkRun
    mean_jobs: float
    low: float
    high: float
    windows: tuple[float, ...]
    verdict: str
    little_gap: float
    jobs: int
    wall_s: float
    cpu_s: float


def plan(
    instances: Sequence[str],
    policies: Sequence[str],
    seeds: Sequence[int],
    horizon: float,
    warmup: float | None = None,
) -> list[BenchmarkRun]:
    """Every instance x policy x seed, instance by instance, then policy, then seed."""
    return [
        BenchmarkRun(i, p, s, horizon, warmup) for i in instances for p in policies for s in seeds
    ]


def run_one(run: BenchmarkRun) -> RunOutcome:
    """Simulate ``run`` (its instance's network under its policy; a top-level function)."""
    start, cpu = time.perf_counter(), time.process_time()
    net = get_instance(run.instance).build()
    sim = NetworkSimulator(net, run.policy, horizon=run.horizon, warmup=run.warmup, seed=run.seed)
    res = sim.run(keep_jobs=False).result()
    return RunOutcome(
        run,
        res.mean_jobs,
        res.mean_jobs_ci[0],
        res.mean_jobs_ci[1],
        tuple(float(x) for x in res.window_jobs),
        res.verdict,
        res.little_gap(),
        sim.jobs_created,
        time.perf_counter() - start,
        time.process_time() - cpu,
    )


@dataclass(frozen=True)
class Cell:
    """One instance and policy over its seeds: pooled mean jobs ``mean`` with its 95%
    interval ``[low, high]``, the seeds' verdicts (``verdict``: ``stable`` or ``unstable``
    when every seed agrees, else ``mixed``), the largest Little's law gap, the policy's
    reference here (``inside``: whether an exact reference lies in the interval) and the
    instance's optimum (``gap``: ``mean / optimum - 1``)."""

    instance: str
    policy: str
    seeds: tuple[int, ...]
    mean: float
    low: float
    high: float
    verdict: str
    verdicts: tuple[str, ...]
    little_gap: float
    reference: Reference | None
    optimum: Reference | None
    cpu_s: float

    @property
    def inside(self) -> bool | None:
        """Whether the exact reference lies in the interval (``None``: no exact reference)."""
        ref = self.reference
        if ref is None or ref.kind != "exact":
            return None
        return self.low <= ref.value <= self.high

    @property
    def gap(self) -> float | None:
        """``mean / optimum - 1`` (``None`` without a known optimum)."""
        if self.optimum is None:
            return None
        return self.mean / self.optimum.value - 1.0


def _verdict(verdicts: Iterable[str]) -> str:
    """``stable``/``unstable``/``inconclusive`` when every seed says so, else ``mixed``."""
    words = set(verdicts)
    return words.pop() if len(words) == 1 else "mixed"


def aggregate(outcomes: Iterable[RunOutcome], instances: dict[str, Instance]) -> list[Cell]:
    """One :class:`Cell` per instance and policy, in the order the runs were planned."""
    groups: dict[tuple[str, str], list[RunOutcome]] = {}
    for out in outcomes:
        groups.setdefault((out.run.instance, out.run.policy), []).append(out)
    cells = []
    for (name, policy), runs in groups.items():
        runs = sorted(runs, key=lambda o: o.run.seed)
        inst = instances[name]
        if len(runs) == 1:
            mean, low, high = runs[0].mean_jobs, runs[0].low, runs[0].high
        else:
            mean, low, high = pooled_interval([list(o.windows) for o in runs])
        verdicts = tuple(o.verdict for o in runs)
        gaps = [o.little_gap for o in runs if math.isfinite(o.little_gap)]
        cells.append(
            Cell(
                name,
                policy,
                tuple(o.run.seed for o in runs),
                mean,
                low,
                high,
                _verdict(verdicts),
                verdicts,
                max(gaps) if gaps else math.nan,
                inst.reference(policy),
                inst.optimum,
                sum(o.cpu_s for o in runs),
            )
        )
    return cells
