"""Capacity computations and (later) CVXPY linear programs; they read the model only."""

from policyopt.solvers.capacity import Capacity, budget_sweep, capacity, token_capacity
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
    "BatchRegionLP": "static_planning",
    "LPError": "static_planning",
    "RegionPoint": "static_planning",
    "StaticPlan": "static_planning",
    "StaticPlanningLP": "static_planning",
    "batch_configurations": "static_planning",
    "batch_region": "static_planning",
    "choose_solver": "static_planning",
    "ray_capacity": "static_planning",
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
    "RegionPoint",
    "StaticPlan",
    "StaticPlanningLP",
    "Traffic",
    "batch_configurations",
    "batch_region",
    "budget_sweep",
    "capacity",
    "choose_solver",
    "class_rates",
    "engine_capacity",
    "fluid_plan",
    "ray_capacity",
    "routing_matrix",
    "spectral_radius",
    "static_plan",
    "token_capacity",
    "traffic",
]
