"""Capacity computations and (later) CVXPY linear programs; they read the model only."""

from policyopt.solvers.capacity import Capacity, budget_sweep, capacity, token_capacity

__all__ = ["Capacity", "budget_sweep", "capacity", "token_capacity"]
