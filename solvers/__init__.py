"""Capacity computations and CVXPY linear programs; they read the model only.

Modules, each importing only those above it:

* :mod:`~policyopt.solvers.capacity`: single-engine capacity (no CVXPY unless ``max_seqs``);
* :mod:`~policyopt.solvers.traffic`: traffic equations, engine capacities, nominal loads;
* :mod:`~policyopt.solvers.memory_bound`: the memory bound of a limited KV cache (Little's law);
* :mod:`~policyopt.solvers.lp`: choosing an LP solver, a checked solve, :class:`LPError`;
* :mod:`~policyopt.solvers.batch_size_region`: the batch-size region LP of one engine, its
  vertices and a workload's operating point in it;
* :mod:`~policyopt.solvers.static_planning`, :mod:`~policyopt.solvers.fluid_lp`: network LPs.

(``capacity`` loads ``batch_size_region`` inside the functions that need it, so that importing
the capacity and traffic modules does not import CVXPY.)
"""

from policyopt.solvers.capacity import (
    Capacity,
    budget_sweep,
    capacity,
    llm_capacity,
    token_capacity,
)
from policyopt.solvers.memory_bound import (
    MemoryBound,
    NetworkMemory,
    kv_token_batches,
    memory_bound,
    network_memory,
)
from policyopt.solvers.traffic import (
    Traffic,
    class_rates,
    engine_capacity,
    routing_matrix,
    spectral_radius,
    traffic,
)

# The LP modules import CVXPY (about a second); load them on first use, not with the package.
_LAZY = {
    "FluidLP": "fluid_lp",
    "FluidPlan": "fluid_lp",
    "fluid_plan": "fluid_lp",
    "LPError": "lp",
    "choose_solver": "lp",
    "solve_checked": "lp",
    "BatchRegionLP": "batch_size_region",
    "RegionPoint": "batch_size_region",
    "batch_configurations": "batch_size_region",
    "batch_region": "batch_size_region",
    "capacity_region": "batch_size_region",
    "region_vertices": "batch_size_region",
    "RegionReport": "batch_size_region",
    "RegionVertex": "batch_size_region",
    "ray_capacity": "batch_size_region",
    "StaticPlan": "static_planning",
    "StaticPlanningLP": "static_planning",
    "static_plan": "static_planning",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"policyopt.solvers.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'policyopt.solvers' has no attribute {name!r}")


__all__ = [
    "BatchRegionLP",
    "Capacity",
    "FluidLP",
    "FluidPlan",
    "LPError",
    "MemoryBound",
    "NetworkMemory",
    "RegionPoint",
    "RegionReport",
    "RegionVertex",
    "StaticPlan",
    "StaticPlanningLP",
    "Traffic",
    "batch_configurations",
    "batch_region",
    "budget_sweep",
    "capacity",
    "capacity_region",
    "choose_solver",
    "class_rates",
    "engine_capacity",
    "fluid_plan",
    "kv_token_batches",
    "llm_capacity",
    "memory_bound",
    "network_memory",
    "ray_capacity",
    "region_vertices",
    "routing_matrix",
    "solve_checked",
    "spectral_radius",
    "static_plan",
    "token_capacity",
    "traffic",
]
