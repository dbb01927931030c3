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
from policyopt.model.network import (
    ClassSpec,
    ForkNext,
    LLMEngine,
    NetworkSpec,
    RandomNext,
    Station,
    Step,
    Topology,
    WorkflowSpec,
    load_network,
)
from policyopt.model.networks_library import NETWORKS, get_network, resolve_network
from policyopt.model.scenario import RunSpec, Scenario, check_fits
from policyopt.model.scheduler import SCHEDULER_NAMES, SchedulerSpec, scheduler_spec
from policyopt.model.service import SERVICE_KINDS, ServiceDist, parse_service, register_service
from policyopt.model.workload import (
    DeterministicArrivals,
    PoissonArrivals,
    TraceArrivals,
    Workload,
)

__all__ = [
    "NETWORKS",
    "SCHEDULER_NAMES",
    "SERVICE_KINDS",
    "AffineBatchTime",
    "BatchTime",
    "ClassSpec",
    "Constant",
    "DeterministicArrivals",
    "Empirical",
    "EngineSpec",
    "ForkNext",
    "Geometric",
    "LLMEngine",
    "LogNormal",
    "NetworkSpec",
    "PiecewiseBatchTime",
    "PoissonArrivals",
    "RandomNext",
    "RunSpec",
    "Scenario",
    "SchedulerSpec",
    "ServiceDist",
    "StaircaseBatchTime",
    "Station",
    "Step",
    "Topology",
    "TraceArrivals",
    "Uniform",
    "WorkflowSpec",
    "Workload",
    "build",
    "check_fits",
    "fit_affine",
    "get_network",
    "load_network",
    "load_scenario",
    "parse_service",
    "register_service",
    "resolve_network",
    "scheduler_spec",
]
