"""A grid of runs from a sweep spec (``policyopt sweep SPEC.yaml``): configurations x loads x
schedulers or policies x seeds, streamed to a CSV file and resumable.

The spec (:class:`SweepSpec`, a YAML or TOML file; unknown keys are refused)::

    configs: [default, examples/scenario.yaml, rybko-stolyar]
    loads: [0.8, 0.9]            # x lambda* (one engine) or x theta* (a network)
    schedulers: [vllm, sarathi]  # for the one-engine configs (default: each one's own)
    policies: [fcfs, max-pressure]  # for networks and scenarios with request classes
    seeds: [0, 1]
    horizon_s: 1800              # default: a scenario's run.horizon_s, a network 7200 s

A *cell* (:class:`Cell`) is one run; its key is ``(config, load, policy, seed)``, where
``policy`` is the scheduler of a one-engine config. Configs are read and validated in this
process; a cell carries the resulting spec (a :class:`~policyopt.model.Scenario` at its
rate, or a :class:`~policyopt.model.network.NetworkSpec` at its load), so a worker on
another machine needs no file. :func:`run_cell` runs a cell and returns its row: a flat dict
with the same columns for both kinds (:data:`ROW_FIELDS`).

:func:`run_grid` runs the cells that are not yet in the CSV file (a rerun skips them: a
sweep that was killed resumes where it stopped), appending each row as it finishes, through
the one runner (:func:`policyopt.sweep.run_all`, any backend), and at the end rewrites the
file in plan order, so a resumed sweep's file equals a sweep run in one go.
"""

from __future__ import annotations

import contextlib
import csv
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from policyopt.cli_network import DEFAULT_NETWORK_HORIZON_S, NetworkRun, simulate_run
from policyopt.compare import scenario_for, with_horizon
from policyopt.errors import SpecError
from policyopt.model import build
from policyopt.model.config import read_mapping
from policyopt.model.network import NetworkSpec, load_network, scenario_network
from policyopt.model.networks_library import get_network
from policyopt.model.scenario import Scenario
from policyopt.model.validation import StrictSpec
from policyopt.report import CsvAppender, write_csv
from policyopt.sim import simulate
from policyopt.sim.network_sim import NetworkResult
from policyopt.sim.result import EngineResult
from policyopt.sweep import Backend, Outcome, RunsInterrupted, run_all

DEFAULT_CONFIG = "default"
"""The config name of the built-in single-engine scenario (the paper's engine)."""

KEY_FIELDS: tuple[str, ...] = ("config", "load", "policy", "seed")
"""The columns that identify a cell."""

ROW_FIELDS: tuple[str, ...] = (
    *KEY_FIELDS,
    "kind",
    "capacity",
    "rate",
    "horizon_s",
    "verdict",
    "throughput",
    "mean_in_system",
    "latency_mean_s",
    "latency_p99_s",
    "drift",
    "drift_low",
    "drift_high",
)
"""The columns of a row, in order. ``kind``: ``engine`` or ``network``; ``capacity``:
``lambda*`` (requests/s) or ``theta*``; ``rate`` and ``throughput``: requests/s (summed
over a network's workflows); ``mean_in_system``: requests or jobs; latencies in s (a
network: the mean over workflows, and the largest p99); ``drift``: tokens/s of the token
backlog (one engine) or jobs/s (a network), with its 95% interval."""


PositiveLoad = Annotated[float, Field(gt=0)]
Seed = Annotated[int, Field(ge=0)]


class SweepSpec(StrictSpec):
    """A grid of runs (see the module docstring); every list non-empty, no repeats."""

    configs: list[str] = Field(min_length=1)
    loads: list[PositiveLoad] = Field(min_length=1)
    schedulers: list[str] | None = Field(None, min_length=1)
    policies: list[str] | None = Field(None, min_length=1)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    horizon_s: float | None = Field(None, gt=0, description="simulated seconds")

    def model_post_init(self, _: Any) -> None:
        for name in ("configs", "loads", "schedulers", "policies", "seeds"):
            values = getattr(self, name) or []
            if len(set(values)) < len(values):
                repeated = next(v for v in values if values.count(v) > 1)
                raise SpecError(name, f"{repeated!r} is listed twice", "list each value once")


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """The validated spec of a YAML/TOML file (:class:`~policyopt.errors.SpecError` naming
    the field otherwise)."""
    return build(SweepSpec, read_mapping(path))


@dataclass(frozen=True)
class Cell:
    """One run of the grid. ``scenario`` (one engine, at its rate, horizon and seed) or
    ``network`` (a :class:`NetworkRun` already scaled to the load) is what runs;
    ``capacity`` is ``lambda*`` (requests/s) or ``theta*``."""

    config: str
    load: float
    policy: str
    seed: int
    horizon_s: float
    capacity: float
    scenario: Scenario | None = None
    network: NetworkRun | None = None

    @property
    def key(self) -> tuple[str, float, str, int]:
        """``(config, load, policy, seed)``."""
        return (self.config, self.load, self.policy, self.seed)


def row_key(row: dict[str, Any]) -> tuple[str, float, str, int]:
    """The key of a row read from the CSV file (texts) or made by :func:`run_cell`."""
    return (str(row["config"]), float(row["load"]), str(row["policy"]), int(row["seed"]))


@dataclass(frozen=True)
class _Config:
    """A config of the spec, read: one engine (``scenario``) or a network (``network``, with
    the simulator ``options`` of a scenario with request classes)."""

    name: str
    scenario: Scenario | None = None
    network: NetworkSpec | None = None
    options: tuple[tuple[str, Any], ...] = ()


def _read_config(name: str, folder: Path) -> _Config:
    """A config by name: ``default``, a file (relative to the spec's folder, else to the
    current one), or a library network."""
    if name == DEFAULT_CONFIG:
        return _Config(name, scenario=Scenario())
    path = folder / name
    if not path.is_file():
        path = Path(name)
    if not path.is_file():
        if path.suffix.lower() in (".yaml", ".yml", ".toml") or "/" in name:
            raise SpecError("configs", f"{name!r}: no such file", "give a path to a config")
        return _Config(name, network=get_network(name))
    data = read_mapping(path)
    if "workflows" in data or "engines" in data:
        return _Config(name, network=load_network(path))
    scen = build(Scenario, data, prefix=name)
    if not scen.network_form:
        return _Config(name, scenario=scen)
    options: dict[str, Any] = {"samples": scen.run.samples}
    if scen.run.warmup_s is not None:
        options["warmup"] = scen.run.warmup_s
    return _Config(name, network=scenario_network(scen), options=tuple(options.items()))


@contextlib.contextmanager
def _field(name: str) -> Iterator[None]:
    """Re-raise a :class:`SpecError` with its field under ``name`` (``schedulers.name``)."""
    try:
        yield
    except SpecError as err:
        raise SpecError(f"{name}: {err.field}", err.problem, err.fix) from None


def plan_cells(spec: SweepSpec, folder: str | Path = ".") -> list[Cell]:
    """Every cell of ``spec``, validated before anything runs, in plan order: config by
    config, then load, then scheduler or policy, then seed. ``folder`` is where relative
    config paths are looked up first (the spec file's folder)."""
    from policyopt.policies import make_policy
    from policyopt.solvers.capacity import capacity
    from policyopt.solvers.static_planning import static_plan

    configs = [_read_config(name, Path(folder)) for name in spec.configs]
    engines = [c for c in configs if c.scenario is not None]
    for field_name, used, what in (
        ("schedulers", engines, "single-engine scenario"),
        ("policies", [c for c in configs if c.network is not None], "network"),
    ):
        if getattr(spec, field_name) is not None and not used:
            raise SpecError(
                field_name,
                f"no config is a {what}, so these would never run",
                f"drop {field_name}, or add a {what} to configs",
            )
    cells: list[Cell] = []
    for c in configs:
        if c.scenario is not None:
            base = c.scenario
            horizon = spec.horizon_s or base.run.horizon_s
            cap = capacity(base.engine, base.workload).lambda_star
            names = spec.schedulers or [base.scheduler.label]
            for load in spec.loads:
                for name in names:
                    for seed in spec.seeds:
                        with _field("schedulers" if spec.schedulers else c.name):
                            scen = scenario_for(with_horizon(base, horizon, seed), name, load * cap)
                        cells.append(Cell(c.name, load, name, seed, horizon, cap, scenario=scen))
            continue
        assert c.network is not None
        horizon = spec.horizon_s or DEFAULT_NETWORK_HORIZON_S
        theta = static_plan(c.network).theta
        policies = spec.policies or ["fcfs"]
        for p in policies:
            with _field("policies" if spec.policies else c.name):
                make_policy(p).bind(c.network)  # every bad policy before anything runs
        for load in spec.loads:
            net = c.network.scaled(load * theta)
            for name in policies:
                for seed in spec.seeds:
                    run = NetworkRun(net, name, load, horizon, seed, c.options)
                    cells.append(Cell(c.name, load, name, seed, horizon, theta, network=run))
    return cells


def _engine_row(res: EngineResult) -> dict[str, Any]:
    return {
        "rate": res.rate,
        "verdict": res.verdict,
        "throughput": res.throughput,
        "mean_in_system": res.mean_in_system,
        "latency_mean_s": res.latency_mean,
        "latency_p99_s": res.latency_p99,
        "drift": res.drift,
        "drift_low": res.drift_ci[0],
        "drift_high": res.drift_ci[1],
    }


def _network_row(res: NetworkResult) -> dict[str, Any]:
    flows = list(res.workflows.values())
    return {
        "rate": math.fsum(f["rate"] for f in flows),
        "verdict": res.verdict,
        "throughput": math.fsum(f["throughput"] for f in flows),
        "mean_in_system": res.mean_jobs,
        "latency_mean_s": float(np.mean([f["latency_mean"] for f in flows])),
        "latency_p99_s": max(f["latency_p99"] for f in flows),
        "drift": res.jobs_drift,
        "drift_low": res.jobs_drift_ci[0],
        "drift_high": res.jobs_drift_ci[1],
    }


def run_cell(cell: Cell) -> dict[str, Any]:
    """Run one cell; its row (:data:`ROW_FIELDS`). A top-level function: it runs in a
    process pool or on a Ray worker."""
    if cell.scenario is not None:
        kind, numbers = "engine", _engine_row(simulate(cell.scenario))
    else:
        assert cell.network is not None
        kind, numbers = "network", _network_row(simulate_run(cell.network))
    head = {
        "config": cell.config,
        "load": cell.load,
        "policy": cell.policy,
        "seed": cell.seed,
        "kind": kind,
        "capacity": cell.capacity,
        "horizon_s": cell.horizon_s,
    }
    row = {**head, **numbers}
    return {k: row[k] for k in ROW_FIELDS}


def read_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a sweep CSV (none when it is missing); a last line cut short (a
    sweep killed while writing) is left out. Refuses a file with other columns."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return []
        if tuple(reader.fieldnames) != ROW_FIELDS:
            raise SpecError(
                str(path),
                "is not a sweep results file (its columns differ)",
                "give another --out, or --overwrite to replace it",
            )
        rows = list(reader)
    whole = path.read_text().endswith("\n")
    return [
        r
        for i, r in enumerate(rows)
        if None not in r.values() and (whole or i < len(rows) - 1) and len(r) == len(ROW_FIELDS)
    ]


@dataclass
class GridOutcome:
    """What :func:`run_grid` produced: ``rows`` of every cell done (those found in the file
    and those run now) in plan order, then rows of the file for cells no longer planned;
    ``ran``: how many cells ran now; ``skipped``: how many were already in the file;
    ``failures``: ``(cell, error)``; ``complete``: false after an interrupt."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    failures: list[tuple[Cell, str]] = field(default_factory=list)
    complete: bool = False


class GridInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_grid`; ``outcome`` holds the rows so far (in the file too)."""

    def __init__(self, outcome: GridOutcome) -> None:
        super().__init__("sweep interrupted")
        self.outcome = outcome


def _check_horizons(done: dict[tuple[str, float, str, int], dict], cells: Sequence[Cell]) -> None:
    """Refuse resuming when a cell of the file ran with another horizon than planned."""
    for cell in cells:
        row = done.get(cell.key)
        if row is not None and float(row["horizon_s"]) != cell.horizon_s:
            raise SpecError(
                "horizon_s",
                f"the results file holds {cell.key} run with horizon {row['horizon_s']} s, and "
                f"the spec asks for {cell.horizon_s:g} s",
                "give --overwrite to start again, or another --out",
            )


def run_grid(
    cells: Sequence[Cell],
    path: str | Path,
    *,
    backend: Backend | None = None,
    progress: bool = True,
    on_error: Callable[[Cell, str], None] | None = None,
) -> GridOutcome:
    """Run the cells of ``cells`` that the CSV file ``path`` does not hold yet, appending each
    row as it finishes, then rewrite the file in plan order (:class:`GridOutcome`).

    The runs go through :func:`policyopt.sweep.run_all` on ``backend`` (default: this
    process). A run that raises is reported (``on_error``) and the others go on; Ctrl-C
    raises :class:`GridInterrupted` with the rows so far, all of them already in the file.
    """
    path = Path(path)
    kept = read_rows(path)
    done = {row_key(r): r for r in kept}
    _check_horizons(done, cells)
    todo = [c for c in cells if c.key not in done]
    outcome = GridOutcome(skipped=len(cells) - len(todo))
    if kept:
        write_csv(path, kept)  # without a line cut short, so that appending lines up
    else:
        path.unlink(missing_ok=True)
    appender = CsvAppender(path, append=True)

    def finish(result: Outcome[dict[str, Any]]) -> GridOutcome:
        for i, row in result.results.items():
            done[todo[i].key] = row
        outcome.ran = len(result.results)
        outcome.failures = [(todo[i], error) for i, error in result.errors.items()]
        outcome.complete = result.complete
        planned = {c.key for c in cells}
        outcome.rows = [done[c.key] for c in cells if c.key in done]
        outcome.rows += [r for k, r in done.items() if k not in planned]
        if outcome.rows:
            write_csv(path, outcome.rows)
        return outcome

    try:
        result = run_all(
            todo,
            run_cell,
            backend=backend,
            progress=progress,
            desc="cells",
            label=lambda c: f"{c.config} {c.policy} x{c.load:g} seed {c.seed}",
            on_result=lambda _, row: appender.write(row),
            on_error=None if on_error is None else lambda i, e: on_error(todo[i], e),
        )
    except RunsInterrupted as stop:
        appender.close()
        raise GridInterrupted(finish(stop.outcome)) from None
    appender.close()
    return finish(result)
