"""policyopt: capacity, scheduling policies and learned schedulers for LLM inference."""

from policyopt.errors import SpecError
from policyopt.model import (
    EngineSpec,
    RunSpec,
    Scenario,
    SchedulerSpec,
    Workload,
    load_scenario,
)

__version__ = "0.1.0"

__all__ = [
    "EngineSpec",
    "RunSpec",
    "Scenario",
    "SchedulerSpec",
    "SpecError",
    "Workload",
    "__version__",
    "load_scenario",
]
