"""Tune a parametric policy by simulation (``policyopt tune``, ``docs/policies.md``).

A *family* maps a parameter vector to a policy spec (``weighted-pressure:...``,
``linear:...``, ``priority:...``, ``batch-cap:...``). The search minimizes the mean long-run
holding cost per second over the *training* seeds; every candidate runs with the same seeds,
so two candidates meet the same arrivals and job sizes (common random numbers) and their
difference is not noise of the draws. The best candidates of the search are then compared on
*validation* seeds, the winner chosen there, and the winner, its starting point and the
designed baselines are reported on *test* seeds; the three seed sets never overlap, so the reported
numbers are not the ones the search or the selection fitted.

Continuous families (``pressure``, ``linear``) are searched with SciPy's Nelder-Mead (derivative
free; the objective is a simulation); ``priority`` by local search over class orders (swap two
classes served at one engine; first improvement), ``batch-cap`` by the same local search over a
grid of token caps and queue thresholds. Every evaluation (spec, seed, horizon,
cost) is appended to ``evaluations.jsonl`` in the output folder as it finishes; a rerun with
the same folder reads them back and runs only what is missing (resumable). The tuned spec is
an ordinary policy name, usable wherever a policy is (``simulate``, ``compare``,
``evaluate``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import optimize

from policyopt.batch_cap import cap_levels, has_llm_engine
from policyopt.errors import SpecError
from policyopt.index_policies import format_numbers
from policyopt.model.network import NetworkSpec
from policyopt.sim.network_sim import NetworkSimulator
from policyopt.sim.stats import t_interval

BASELINES = ("fcfs", "max-pressure")
"""Designed policies every report includes."""

FINALISTS = 5
"""Best distinct candidates of the search compared on the validation seeds."""


# ----------------------------------------------------------------------------- families
class Family:
    """A parametric policy family: a starting point, and the spec of a parameter vector."""

    name: ClassVar[str] = ""
    continuous: ClassVar[bool] = True

    def __init__(self, net: NetworkSpec) -> None:
        self.net = net
        topo = net.topology
        self.K = topo.n_classes
        self.rate = [1.0 / w if w > 0 else 0.0 for w in topo.work]
        self.h = list(topo.holding_cost)

    def start(self) -> list[float]:
        """The parameters the search starts from."""
        raise NotImplementedError

    def spec(self, x: Sequence[float]) -> str:
        """The policy spec of parameters ``x``."""
        raise NotImplementedError

    def steps(self, x0: Sequence[float]) -> list[float]:
        """The size of the first simplex's step along each parameter."""
        return [0.5] * len(x0)


class PressureFamily(Family):
    """``weighted-pressure``: log-weights per class; starts at maximum pressure (all 0)."""

    name = "pressure"

    def start(self) -> list[float]:
        return [0.0] * self.K

    def spec(self, x: Sequence[float]) -> str:
        return "weighted-pressure:" + format_numbers([round(math.exp(v), 6) for v in x])


class LinearFamily(Family):
    """``linear``: ``(a_k, b_k)`` per class; starts at the c-mu rule (``a_k = h_k r_k`` scaled
    to a largest of 1, ``b_k = 0``)."""

    name = "linear"

    def start(self) -> list[float]:
        cmu = [h * r for h, r in zip(self.h, self.rate, strict=True)]
        top = max(cmu) or 1.0
        return [v for c in cmu for v in (c / top, 0.0)]

    def spec(self, x: Sequence[float]) -> str:
        return "linear:" + format_numbers([round(v, 6) for v in x])

    def steps(self, x0: Sequence[float]) -> list[float]:
        return [0.5 if i % 2 == 0 else 1.0 for i in range(len(x0))]


class PriorityFamily(Family):
    """``priority``: a total order of the classes (each engine serves its own classes in that
    order); starts at the c-mu order (largest ``h_k r_k`` first)."""

    name = "priority"
    continuous = False

    def start(self) -> list[float]:
        return sorted(range(self.K), key=lambda k: (-self.h[k] * self.rate[k], k))  # type: ignore[return-value]

    def spec(self, x: Sequence[float]) -> str:
        names = self.net.topology.classes
        return "priority:" + ">".join(names[int(k)] for k in x)

    def neighbours(self, order: Sequence[float]) -> list[list[float]]:
        """The orders one swap away: two classes that share an engine trade places."""
        eligible = self.net.topology.eligible
        out = []
        for i, j in combinations(range(len(order)), 2):
            a, b = int(order[i]), int(order[j])
            if set(eligible[a]) & set(eligible[b]):
                new = list(order)
                new[i], new[j] = new[j], new[i]
                out.append(new)
        return out


class BatchCapFamily(Family):
    """``batch-cap``: the c-mu order with smaller batches while an LLM engine's queue is short
    (:class:`~policyopt.batch_cap.BatchCap`); two parameters, searched by local search over a
    grid: the cap (an index into :func:`~policyopt.batch_cap.cap_levels`) and the threshold
    (an index into :data:`THRESHOLDS`). Networks with an LLM engine only."""

    name = "batch-cap"
    continuous = False
    BASE: ClassVar[str] = "c-mu"
    THRESHOLDS: ClassVar[tuple[int | None, ...]] = (0, 1, 2, 5, 10, 20, 50, 100, 200, None)
    """Prompts waiting at the engine up to which batches are capped (``None``: always)."""

    def __init__(self, net: NetworkSpec) -> None:
        super().__init__(net)
        if not has_llm_engine(net):
            raise SpecError(
                "--family",
                f"batch-cap: network {net.name!r} has no LLM engine, so no batch to cap",
                "use pressure, linear or priority",
            )
        self.levels = cap_levels(net)

    def start(self) -> list[float]:
        """The full budget (the c-mu rule itself), the threshold of 20 prompts ready for the
        first smaller cap."""
        return [len(self.levels) - 1, self.THRESHOLDS.index(20)]

    def spec(self, x: Sequence[float]) -> str:
        cap, jobs = self.levels[int(x[0])], self.THRESHOLDS[int(x[1])]
        limit = str(cap) if jobs is None else f"{cap},{jobs}"
        return f"batch-cap:{limit}:{self.BASE}"

    def neighbours(self, x: Sequence[float]) -> list[list[float]]:
        """One grid step in the cap (smaller first), then in the threshold."""
        i, j = int(x[0]), int(x[1])
        moves = [(i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)]
        return [
            [a, c] for a, c in moves if 0 <= a < len(self.levels) and 0 <= c < len(self.THRESHOLDS)
        ]


FAMILIES: dict[str, type[Family]] = {}
"""Families by name (:func:`register_family`)."""


def register_family(cls: type[Family]) -> None:
    """Make family ``cls`` (its ``name``) known to :func:`tune` and ``policyopt tune``."""
    FAMILIES[cls.name] = cls


register_family(PressureFamily)
register_family(LinearFamily)
register_family(PriorityFamily)
register_family(BatchCapFamily)


# ----------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class TuneSettings:
    """How candidates are evaluated: ``horizon`` simulated seconds (warm-up 10%) with each
    seed of ``train`` (search), ``val`` (selection) and ``test`` (report); ``budget``
    candidates at most in the search."""

    horizon: float
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    budget: int

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise SpecError("--budget", f"{self.budget} is not >= 1", "give a whole number >= 1")
        if not self.horizon > 0 or not math.isfinite(self.horizon):
            raise SpecError("--horizon", f"{self.horizon} is not > 0", "give seconds > 0")
        sets = {"--train-seeds": self.train, "--val-seeds": self.val, "--test-seeds": self.test}
        for flag, seeds in sets.items():
            if not seeds:
                raise SpecError(flag, "no seed", "give at least one seed")
            if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
                raise SpecError(flag, f"{list(seeds)}: seeds must be distinct and >= 0", "")
        for (fa, a), (fb, b) in combinations(sets.items(), 2):
            common = sorted(set(a) & set(b))
            if common:
                raise SpecError(
                    f"{fa} / {fb}",
                    f"seeds {common} are in both: the report would reuse what was fitted",
                    "give disjoint seed sets",
                )


class Evaluations:
    """Holding costs of (spec, seed) at one horizon, kept in ``path`` (JSON lines) if given;
    ``run`` counts the simulations this process ran."""

    def __init__(self, net: NetworkSpec, horizon: float, path: Path | None) -> None:
        self.net = net
        self.horizon = horizon
        self.path = path
        self.costs: dict[tuple[str, int], float] = {}
        self.run = 0
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                rec = json.loads(line)
                if rec.get("horizon") == horizon and rec.get("network") == net.name:
                    self.costs[(rec["spec"], int(rec["seed"]))] = float(rec["cost"])

    def cost(self, spec: str, seed: int) -> float:
        """Mean holding cost per second of ``spec`` with ``seed`` (simulated once)."""
        key = (spec, seed)
        if key not in self.costs:
            sim = NetworkSimulator(self.net, spec, horizon=self.horizon, seed=seed)
            value = float(sim.run(keep_jobs=False).result().holding_cost)
            self.costs[key] = value
            self.run += 1
            if self.path is not None:
                rec = {
                    "network": self.net.name,
                    "spec": spec,
                    "seed": seed,
                    "horizon": self.horizon,
                    "cost": value,
                }
                with self.path.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
        return self.costs[key]

    def mean(self, spec: str, seeds: Sequence[int]) -> float:
        """Mean over ``seeds`` of :meth:`cost`."""
        return float(np.mean([self.cost(spec, s) for s in seeds]))


@dataclass
class TuneResult:
    """What :func:`tune` found: the chosen ``spec``, the search's ``trace`` (spec, training
    mean) in evaluation order, the validation means of the finalists, and the test report
    (policy -> mean, 95% interval over the test seeds, paired difference to
    ``max-pressure`` with its interval)."""

    family: str
    spec: str
    start: str
    trace: list[tuple[str, float]]
    validation: dict[str, float]
    test: dict[str, dict[str, float]] = field(default_factory=dict)
    simulations: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "spec": self.spec,
            "start": self.start,
            "validation": self.validation,
            "test": self.test,
            "search": [{"spec": s, "train_cost": c} for s, c in self.trace],
            "simulations": self.simulations,
        }


def tune(
    net: NetworkSpec,
    family: str,
    settings: TuneSettings,
    *,
    out: Path | None = None,
    progress: Callable[[int], None] | None = None,
    start: Sequence[float] | None = None,
) -> TuneResult:
    """Search ``family`` on ``net`` (see the module docstring); ``progress(n)`` is called
    after each candidate with the candidates done. With ``out``, evaluations are kept in
    ``out/evaluations.jsonl`` (and reused by a rerun). ``start``: parameters to start from
    instead of the family's own (for a ``priority`` search, an order of class indices)."""
    cls = FAMILIES.get(family)
    if cls is None:
        raise SpecError("--family", f"unknown family {family!r}", f"use {', '.join(FAMILIES)}")
    fam = cls(net)
    path = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "evaluations.jsonl"
    ev = Evaluations(net, settings.horizon, path)
    trace: list[tuple[str, float]] = []
    seen: dict[str, float] = {}

    def objective(x: Sequence[float]) -> float:
        spec = fam.spec(x)
        if spec not in seen:
            if len(seen) >= settings.budget:
                raise _Budget
            seen[spec] = ev.mean(spec, settings.train)
            trace.append((spec, seen[spec]))
            if progress is not None:
                progress(len(seen))
        return seen[spec]

    x0 = list(start) if start is not None else fam.start()
    first = fam.spec(x0)
    try:
        if fam.continuous:
            simplex = [list(x0)] + [
                [v + (s if i == j else 0.0) for j, v in enumerate(x0)]
                for i, s in enumerate(fam.steps(x0))
            ]
            optimize.minimize(
                objective,
                np.asarray(x0, dtype=float),
                method="Nelder-Mead",
                options={"initial_simplex": np.asarray(simplex), "maxfev": 10 * settings.budget},
            )
        else:
            _local_search(fam, x0, objective)  # type: ignore[arg-type]
    except _Budget:
        pass
    finalists = sorted(seen, key=lambda s: (seen[s], s))[:FINALISTS]
    if first not in finalists:
        finalists.append(first)
    validation = {s: ev.mean(s, settings.val) for s in finalists}
    best = min(finalists, key=lambda s: (validation[s], s))
    result = TuneResult(family, best, first, trace, validation)
    result.test = report(ev, [best, first, *BASELINES], settings.test)
    result.simulations = ev.run
    return result


class _Budget(Exception):
    """The search has evaluated its budget of candidates."""


def _local_search(
    fam: PriorityFamily | BatchCapFamily,
    x0: list[float],
    objective: Callable[[Sequence[float]], float],
) -> None:
    """First-improvement local search from ``x0`` over ``fam.neighbours`` (for orders: one
    swap; for a grid: one step)."""
    current, value = x0, objective(x0)
    improved = True
    while improved:
        improved = False
        for cand in fam.neighbours(current):
            v = objective(cand)
            if v < value:
                current, value, improved = cand, v, True
                break


def report(
    ev: Evaluations, specs: Sequence[str], seeds: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Per policy: mean holding cost over ``seeds`` with its 95% interval, and the paired
    difference to ``max-pressure`` (same seeds) with its interval."""
    ref = [ev.cost("max-pressure", s) for s in seeds]
    out: dict[str, dict[str, float]] = {}
    for spec in dict.fromkeys(specs):
        costs = [ev.cost(spec, s) for s in seeds]
        mean, lo, hi = t_interval(np.asarray(costs))
        diff = np.asarray(costs) - np.asarray(ref)
        d, dlo, dhi = t_interval(diff)
        out[spec] = {
            "mean": mean,
            "low": lo,
            "high": hi,
            "vs_mp": d,
            "vs_mp_low": dlo,
            "vs_mp_high": dhi,
        }
    return out
