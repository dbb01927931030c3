"""The model: what a user declares. It knows nothing of simulators, solvers or environments."""

from policyopt.model.batch_time import (
    AffineBatchTime,
    BatchTime,
    PiecewiseBatchTime,
    StaircaseBatchTime,
    fit_affine,
)
from policyopt.model.config import build, load_scenario
from policyopt.model.engine import EngineSpec
from policyopt.model.lengths import Constant, Empirical, Geometric, LogNormal, Uniform
from policyopt.model.scenario import RunSpec, Scenario, check_fits
from policyopt.model.scheduler import SCHEDULER_NAMES, SchedulerSpec, scheduler_spec
from policyopt.model.workload import (
    DeterministicArrivals,
    PoissonArrivals,
    TraceArrivals,
    Workload,
)

__all__ = [
    "SCHEDULER_NAMES",
    "AffineBatchTime",
    "BatchTime",
    "Constant",
    "DeterministicArrivals",
    "Empirical",
    "EngineSpec",
    "Geometric",
    "LogNormal",
    "PiecewiseBatchTime",
    "PoissonArrivals",
    "RunSpec",
    "Scenario",
    "SchedulerSpec",
    "StaircaseBatchTime",
    "TraceArrivals",
    "Uniform",
    "Workload",
    "build",
    "check_fits",
    "fit_affine",
    "load_scenario",
    "scheduler_spec",
]
