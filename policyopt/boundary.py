"""The stability-boundary finder: the largest load a scheduler or policy keeps stable.

Loads are multiples of a capacity: ``lambda*`` (requests/s) for one engine, ``theta*`` (the
static planning LP's factor on the network's arrival rates) for a network. The capacity is
an upper bound for every scheduler; the finder measures how much of it one scheduler keeps.

**The sequential test at one load** (:func:`judge`). Simulate a horizon ``h`` (simulated
seconds) and take the drift verdict (:mod:`policyopt.sim.stability`). ``stable`` or
``unstable`` ends the test; ``inconclusive`` doubles the horizon and runs again (same seed),
up to ``max_horizon``; still ``inconclusive`` there, the point counts as inconclusive.

**The search** (:func:`find_boundary`). ``high`` (default 1.2) is judged first: stable there,
the search stops (the boundary is above the range). Then ``low`` (default 0.5), halved while
it is not stable, down to ``min_load``. Between the largest stable load ``lo`` and the
smallest load that is not stable ``hi``, the midpoint is judged and replaces one of them,
until ``hi - lo <= tol * hi`` or ``max_points`` loads were judged. A point left
inconclusive at ``max_horizon`` counts as *not stable*: ``lo`` is always a load shown
stable, and ``hi`` says whether it was shown unstable or stayed inconclusive.

**Above capacity nothing is stable.** Load 1 is the capacity (``lambda*``, or ``theta*``
of the LP), which no scheduler or policy exceeds (Theorem 2 of Li, Dai and Peng for one
engine; the static planning LP's necessary condition for a network). The drift test calls
a backlog stable when it grows by less than 2% of the offered work rate, so a load just
above capacity (up to ``1 / 0.98``, about 1.02, for a work-conserving scheduler) can be
called stable by it. Such a point keeps its verdict in the table, gets the status
``above capacity`` (:attr:`Point.status`), and counts as not stable.

The result, :class:`BoundarySearch`, keeps every point judged (in the order judged) and each
point every horizon tried; the interval ``[lo, hi]`` brackets the boundary. Its share of
capacity is the interval's midpoint. Ctrl-C raises :class:`BoundaryInterrupted` carrying the
search so far. The same settings and seed give the same points.

"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policyopt.errors import SpecError

DEFAULT_LOW = 0.5
"""First stable guess, x capacity; halved while it is not stable."""
DEFAULT_HIGH = 1.2
"""First unstable guess, x capacity: above it no scheduler is stable."""
DEFAULT_TOL = 0.02
"""Stop when the interval's width is at most this share of its upper end."""
DEFAULT_MIN_LOAD = 1e-3
"""The search gives up looking for a stable load below this, x capacity."""
DEFAULT_MAX_POINTS = 20
"""The most loads one search judges."""
HORIZON_GROWTH = 2.0
"""The sequential test's factor on the horizon after an inconclusive verdict."""

STATUSES = ("stable", "unstable", "inconclusive", "above capacity", "unfinished")
"""What a point counts as in the search: its verdict, ``above capacity`` for a load of at
least 1 (x capacity) that the drift test called stable, or ``unfinished`` for the point
whose sequential test was interrupted (it bounds nothing)."""


@dataclass(frozen=True)
class Trial:
    """One simulation of the sequential test: its horizon (simulated s), the drift verdict,
    the drift estimate with its 95% interval and the verdict's threshold (tokens/s for one
    engine, jobs/s for a network), and the wall time it took (s)."""

    horizon_s: float
    verdict: str
    drift: float
    drift_low: float
    drift_high: float
    threshold: float
    wall_s: float


@dataclass
class Point:
    """One load judged by the sequential test: the load (x capacity), its arrival rate
    (requests/s; a network: summed over its workflows) and the trials, shortest first."""

    load: float
    rate: float
    trials: list[Trial] = field(default_factory=list)
    done: bool = False  # the sequential test ended (false: interrupted during it)

    @property
    def verdict(self) -> str:
        """The last trial's verdict (``inconclusive`` before any)."""
        return self.trials[-1].verdict if self.trials else "inconclusive"

    @property
    def status(self) -> str:
        """What the point counts as (:data:`STATUSES`): its verdict, except ``above
        capacity`` for a load >= 1 called stable (nothing is stable above capacity)."""
        if not self.done:
            return "unfinished"
        if self.verdict == "stable" and self.load >= 1.0:
            return "above capacity"
        return self.verdict

    @property
    def stable(self) -> bool:
        """True when the point counts as stable in the search."""
        return self.status == "stable"

    @property
    def horizon_s(self) -> float:
        """The longest horizon tried, simulated seconds."""
        return self.trials[-1].horizon_s if self.trials else 0.0

    @property
    def wall_s(self) -> float:
        """Wall time of all trials, seconds."""
        return math.fsum(t.wall_s for t in self.trials)

    def row(self, index: int) -> dict[str, Any]:
        """A flat row for CSV/JSON: the point and its last trial (``horizons_s``: every
        horizon tried, separated by ``;``)."""
        last = self.trials[-1] if self.trials else None
        return {
            "index": index,
            "load": self.load,
            "rate": self.rate,
            "verdict": self.verdict,
            "status": self.status,
            "horizon_s": self.horizon_s,
            "horizons_s": ";".join(f"{t.horizon_s:g}" for t in self.trials),
            "drift": last.drift if last else math.nan,
            "drift_low": last.drift_low if last else math.nan,
            "drift_high": last.drift_high if last else math.nan,
            "threshold": last.threshold if last else math.nan,
            "wall_s": round(self.wall_s, 3),
        }


@dataclass(frozen=True)
class SearchSettings:
    """The search's knobs: ``low``/``high`` first guesses and ``min_load`` (x capacity),
    relative ``tol``, ``max_points``, the first and largest horizon (simulated s), the seed."""

    low: float = DEFAULT_LOW
    high: float = DEFAULT_HIGH
    tol: float = DEFAULT_TOL
    horizon_s: float = 1800.0
    max_horizon_s: float = 28800.0
    seed: int = 0
    min_load: float = DEFAULT_MIN_LOAD
    max_points: int = DEFAULT_MAX_POINTS

    def __post_init__(self) -> None:
        checks = [
            ("--low", self.low > 0, "a load > 0"),
            ("--high", self.high > self.low, f"a load above --low ({self.low:g})"),
            ("--tol", 0 < self.tol < 1, "a share between 0 and 1"),
            ("--horizon", self.horizon_s > 0, "a horizon > 0 s"),
            (
                "--max-horizon",
                self.max_horizon_s >= self.horizon_s,
                f"at least the first horizon ({self.horizon_s:g} s)",
            ),
            ("--max-points", self.max_points >= 2, "at least 2"),
        ]
        for flag, ok, want in checks:
            if not ok:
                raise SpecError(flag, "out of range", f"give {want}")


@dataclass
class BoundarySearch:
    """Every point judged, in order, and the interval they give.

    ``target`` names what was searched (``vllm``, ``max-pressure on rybko-stolyar``);
    ``capacity_name`` is ``lambda*`` or ``theta*``, ``capacity`` its value (requests/s for
    ``lambda*``, a factor for ``theta*``) and ``capacity_rate`` the arrival rate at load 1
    (requests/s, summed over a network's workflows). ``stopped`` says why the search ended.
    """

    target: str
    capacity_name: str
    capacity: float
    capacity_rate: float
    settings: SearchSettings
    points: list[Point] = field(default_factory=list)
    stopped: str = "not started"
    complete: bool = False

    @property
    def lower(self) -> float | None:
        """The largest load judged stable (x capacity), or ``None``."""
        stable = [p.load for p in self.points if p.stable]
        return max(stable) if stable else None

    @property
    def upper(self) -> float | None:
        """The smallest load judged not stable above :attr:`lower`, or ``None``."""
        lo = self.lower if self.lower is not None else 0.0
        above = [p.load for p in self.points if p.done and not p.stable and p.load > lo]
        return min(above) if above else None

    @property
    def upper_status(self) -> str | None:
        """:attr:`Point.status` of :attr:`upper`: ``unstable``, ``inconclusive`` (not shown
        unstable within the largest horizon) or ``above capacity``."""
        hi = self.upper
        return None if hi is None else next(p.status for p in self.points if p.load == hi)

    @property
    def share(self) -> float | None:
        """The share of capacity kept: the interval's midpoint (or its one known end)."""
        lo, hi = self.lower, self.upper
        if lo is not None and hi is not None:
            return (lo + hi) / 2
        return lo if lo is not None else hi

    @property
    def wall_s(self) -> float:
        """Wall time of every trial, seconds."""
        return math.fsum(p.wall_s for p in self.points)

    def rows(self) -> list[dict[str, Any]]:
        """One row per point judged (:meth:`Point.row`), in the order judged."""
        return [p.row(i + 1) for i, p in enumerate(self.points)]

    def to_dict(self) -> dict[str, Any]:
        """Settings, capacity, interval and points, JSON-ready (with :mod:`policyopt.jsonout`)."""
        return {
            "target": self.target,
            "capacity": {
                "name": self.capacity_name,
                "value": self.capacity,
                "rate": self.capacity_rate,
            },
            "settings": self.settings,
            "interval": {
                "lower": self.lower,
                "upper": self.upper,
                "upper_status": self.upper_status,
                "share": self.share,
                "lower_rate": None if self.lower is None else self.lower * self.capacity_rate,
                "upper_rate": None if self.upper is None else self.upper * self.capacity_rate,
            },
            "stopped": self.stopped,
            "complete": self.complete,
            "wall_s": self.wall_s,
            "points": self.rows(),
            "trials": [
                {"index": i + 1, "load": p.load, **t.__dict__}
                for i, p in enumerate(self.points)
                for t in p.trials
            ],
        }


class BoundaryInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search; ``search`` holds the points judged so far."""

    def __init__(self, search: BoundarySearch) -> None:
        super().__init__("boundary search interrupted")
        self.search = search


Evaluate = Callable[[float, float], Trial]
"""``evaluate(load, horizon_s)``: one simulation at ``load`` x capacity for ``horizon_s``
simulated seconds (the seed is the evaluator's), its :class:`Trial`."""


def judge(
    point: Point,
    evaluate: Evaluate,
    settings: SearchSettings,
    on_trial: Callable[[Point, Trial], None] | None = None,
) -> Point:
    """The sequential test at ``point.load``: the first horizon, then twice as long after
    each inconclusive verdict, until a verdict or ``settings.max_horizon_s`` (the last
    horizon is at most that). Trials are appended to ``point`` as they finish."""
    horizon = settings.horizon_s
    while True:
        trial = evaluate(point.load, horizon)
        point.trials.append(trial)
        if on_trial is not None:
            on_trial(point, trial)
        if trial.verdict != "inconclusive" or horizon >= settings.max_horizon_s:
            point.done = True
            return point
        horizon = min(horizon * HORIZON_GROWTH, settings.max_horizon_s)


def find_boundary(
    search: BoundarySearch,
    evaluate: Evaluate,
    on_trial: Callable[[Point, Trial], None] | None = None,
) -> BoundarySearch:
    """Bisect on the load (see the module docstring), filling ``search.points``.

    ``on_trial(point, trial)`` is called after every simulation (e.g. for progress lines).
    Ctrl-C raises :class:`BoundaryInterrupted` with the points judged so far.
    """
    s = search.settings

    def at(load: float) -> bool:
        """Judge ``load``; true when it counts as stable."""
        point = Point(load, load * search.capacity_rate)
        search.points.append(point)
        judge(point, evaluate, s, on_trial)
        return point.stable

    try:
        if at(s.high):
            search.stopped = f"stable at the top of the range ({s.high:g}); raise --high"
            search.complete = True
            return search
        lo = s.low
        while not at(lo):
            if lo / 2 < s.min_load or len(search.points) >= s.max_points:
                search.stopped = f"no stable load found down to {lo:g}"
                search.complete = True
                return search
            lo /= 2
        hi = min(p.load for p in search.points if p.done and not p.stable and p.load > lo)
        while hi - lo > s.tol * hi:
            if len(search.points) >= s.max_points:
                search.stopped = f"the most points ({s.max_points}) were judged"
                search.complete = True
                return search
            mid = (lo + hi) / 2
            if at(mid):
                lo = mid
            else:
                hi = mid
        search.stopped = f"interval width within {s.tol:g} of its upper end"
        search.complete = True
        return search
    except KeyboardInterrupt:
        search.stopped = "interrupted"
        raise BoundaryInterrupted(search) from None


def timed(run: Callable[[], Any]) -> tuple[Any, float]:
    """``run()`` and its wall time in seconds."""
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start
