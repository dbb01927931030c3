"""Compare schedulers over a sweep of loads on one engine (common random numbers).

A sweep runs every ``(scheduler, load)`` pair of a base :class:`~policyopt.model.Scenario`.
The load is a multiple of the engine's capacity boundary
``lambda* = mu / (m_p + m_d)`` requests/s (:func:`policyopt.solvers.capacity.capacity`), so
the arrival rate of a run is ``load * lambda*`` requests/s. Every run uses the base scenario's
seed: all schedulers see the same request stream (common random numbers), which makes their
differences sharper than independent runs would.

Runs go through the toolkit's sweep runner (:func:`policyopt.sweep.run_all`). They are
independent and deterministic, so ``jobs > 1`` (a process pool) gives exactly the numbers of
``jobs = 1``. Finished runs are kept when a run fails (the failure is recorded and the sweep
goes on) or when the user presses Ctrl-C (:class:`SweepInterrupted` carries the partial
:class:`Sweep`); ``on_result`` sees each result as it arrives, e.g. to append it to a CSV
file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from policyopt.errors import SpecError
from policyopt.model import SchedulerSpec, build
from policyopt.model.scenario import Scenario
from policyopt.sim import EngineResult, simulate
from policyopt.solvers.capacity import Capacity, capacity
from policyopt.sweep import Backend, Outcome, RunsInterrupted, run_all

DEFAULT_SCHEDULERS: tuple[str, ...] = ("fastertransformer", "vllm", "orca", "sarathi")
"""The four schedulers of the paper (Li, Dai, Peng, arXiv 2504.07347; ``docs/schedulers.md``)."""

DEFAULT_LOADS: tuple[float, ...] = (0.6, 0.8, 0.9, 0.95, 1.05, 1.1)
"""Default loads, multiples of ``lambda*``: four below the boundary, two above it."""


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its position, scheduler label, load (x lambda*) and scenario."""

    index: int
    scheduler: str
    load: float
    rate: float
    scenario: Scenario


@dataclass(frozen=True)
class RunFailure:
    """A run that raised: which one, and the error as one line (``Type: message``)."""

    scheduler: str
    load: float
    rate: float
    error: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "scheduler": self.scheduler,
            "load": self.load,
            "rate": self.rate,
            "error": self.error,
        }


@dataclass
class Sweep:
    """What a sweep produced so far.

    ``results`` holds the finished runs in plan order (scheduler by scheduler, loads
    ascending as given), ``failures`` the runs that raised; ``complete`` is true when every
    planned run finished or failed (false after an interrupt). ``capacity`` is the engine's
    capacity for the base workload (``mu`` tokens/s, ``lambda_star`` requests/s).
    """

    base: Scenario
    capacity: Capacity
    schedulers: list[str]
    loads: list[float]
    results: list[EngineResult] = field(default_factory=list)
    failures: list[RunFailure] = field(default_factory=list)
    complete: bool = False

    @property
    def planned(self) -> int:
        """Number of runs in the plan."""
        return len(self.schedulers) * len(self.loads)

    def settings(self) -> dict[str, Any]:
        """The sweep's settings, JSON-ready (horizon and warm-up in seconds)."""
        run = self.base.run
        return {
            "schedulers": list(self.schedulers),
            "loads": list(self.loads),
            "horizon_s": run.horizon_s,
            "warmup_s": run.warmup,
            "seed": run.seed,
            "engine": self.base.engine.model_dump(mode="json"),
            "workload": self.base.workload.model_dump(mode="json"),
        }

    def to_dict(self) -> dict[str, Any]:
        """Settings, capacity, run summaries and failures as one JSON-ready dict."""
        return {
            "settings": self.settings(),
            "capacity": self.capacity.to_dict(),
            "complete": self.complete,
            "runs": [r.summary() for r in self.results],
            "failures": [f.to_dict() for f in self.failures],
        }


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``sweep`` holds the runs that had finished."""

    def __init__(self, sweep: Sweep) -> None:
        super().__init__("sweep interrupted")
        self.sweep = sweep


def scenario_for(base: Scenario, scheduler: str | SchedulerSpec, rate: float) -> Scenario:
    """``base`` with another scheduler and arrival rate (requests/s), validated again.

    Raises :class:`~policyopt.errors.SpecError` for an unknown scheduler, a rate that is not
    positive, or a scheduler that cannot run the workload's longest prompt.
    """
    workload = base.workload.with_rate(rate)
    return build(
        Scenario,
        {"engine": base.engine, "scheduler": scheduler, "workload": workload, "run": base.run},
    )


def with_horizon(base: Scenario, horizon_s: float, seed: int) -> Scenario:
    """``base`` with another horizon (simulated s) and seed, validated again."""
    run = base.run.model_dump()
    run.update(horizon_s=horizon_s, seed=seed)
    data = {"engine": base.engine, "scheduler": base.scheduler, "workload": base.workload}
    return build(Scenario, {**data, "run": run})


def plan_sweep(
    base: Scenario, schedulers: Sequence[str | SchedulerSpec], loads: Sequence[float]
) -> tuple[Capacity, list[PlannedRun]]:
    """The capacity of ``base`` and every run of the sweep, validated before anything runs."""
    if not schedulers:
        raise SpecError("schedulers", "no scheduler given", "name at least one scheduler")
    if not loads:
        raise SpecError("loads", "no load given", "give at least one load (x lambda*)")
    for load in loads:
        if not 0 < float(load) < float("inf"):
            raise SpecError("loads", f"{load} is not a load > 0", "give multiples of lambda* > 0")
    if len(set(loads)) < len(loads):
        raise SpecError("loads", "a load is listed twice", "list each load once")
    cap = capacity(base.engine, base.workload)
    plan: list[PlannedRun] = []
    seen: set[str] = set()
    for sched in schedulers:
        label = ""
        for load in loads:
            rate = float(load) * cap.lambda_star
            scen = scenario_for(base, sched, rate)
            label = scen.scheduler.label
            plan.append(PlannedRun(len(plan), label, float(load), rate, scen))
        if label in seen:
            raise SpecError("schedulers", f"{label!r} is listed twice", "list each scheduler once")
        seen.add(label)
    return cap, plan


def _simulate_planned(run: PlannedRun) -> EngineResult:
    """Simulate one planned run; its ``load`` is the planned one exactly (``rate / lambda*``
    can differ from it in the last bit)."""
    return dataclasses.replace(simulate(run.scenario), load=run.load)


def run_sweep(
    base: Scenario,
    schedulers: Sequence[str | SchedulerSpec],
    loads: Sequence[float],
    *,
    progress: bool = True,
    jobs: int = 1,
    backend: Backend | None = None,
    on_result: Callable[[EngineResult], None] | None = None,
    on_failure: Callable[[RunFailure], None] | None = None,
) -> Sweep:
    """Run every ``(scheduler, load)`` pair on ``base`` and return the :class:`Sweep`.

    ``schedulers`` are names (``orca``, ``orca:whole``) or specs; ``loads`` are multiples of
    ``lambda*`` (rate = load * lambda* requests/s). Every run uses ``base.run`` (horizon,
    seed, ...). ``jobs > 1`` runs that many processes, ``backend`` elsewhere (e.g. on Ray,
    :class:`~policyopt.sweep.Backend`); the numbers are the same as with one process.
    A progress bar over runs goes to stderr when ``progress`` is true and stderr is a
    terminal.

    ``on_result`` is called in this process with each finished result as it arrives (in
    completion order when ``jobs > 1``), ``on_failure`` with each run that raised; a failed
    run does not stop the sweep. Ctrl-C raises :class:`SweepInterrupted` whose ``sweep`` has
    the finished runs. Configuration errors raise :class:`~policyopt.errors.SpecError` before
    any run starts.
    """
    cap, plan = plan_sweep(base, schedulers, loads)
    labels = list(dict.fromkeys(run.scheduler for run in plan))
    sweep = Sweep(base, cap, labels, [float(x) for x in loads])

    def failure(index: int, error: str) -> RunFailure:
        run = plan[index]
        return RunFailure(run.scheduler, run.load, run.rate, error)

    def fill(outcome: Outcome[EngineResult]) -> Sweep:
        sweep.results = list(outcome.results.values())
        sweep.failures = [failure(i, error) for i, error in outcome.errors.items()]
        sweep.complete = outcome.complete
        return sweep

    try:
        outcome = run_all(
            plan,
            _simulate_planned,
            jobs=jobs,
            backend=backend,
            progress=progress,
            label=lambda run: f"{run.scheduler} @ {run.load:g}",
            on_result=None if on_result is None else lambda _, result: on_result(result),
            on_error=None if on_failure is None else lambda i, e: on_failure(failure(i, e)),
        )
    except RunsInterrupted as stop:
        raise SweepInterrupted(fill(stop.outcome)) from None
    return fill(outcome)
