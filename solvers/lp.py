"""Calling a linear-program solver through CVXPY: which solver, a checked solve, the error type.

The LP modules (:mod:`policyopt.solvers.static_planning`, :mod:`policyopt.solvers.fluid_lp`,
:mod:`policyopt.solvers.batch_size_region`) build their problems and hand them here.
:func:`choose_solver` picks HiGHS (simplex, exact duals) when installed, else CLARABEL with a
note saying why; :func:`solve_checked` solves and explains an infeasible, unbounded or failed
solve in words (:class:`LPError`).
"""

from __future__ import annotations

import os
import sys

import cvxpy as cp

from policyopt.errors import SpecError


class LPError(SpecError):
    """A linear program that cannot be solved as posed, with the reason in words."""


_QUIET = False


def _quiet_highs() -> None:
    """HiGHS prints a banner to stdout on its first instance; swallow it once."""
    global _QUIET
    if _QUIET:
        return
    _QUIET = True
    try:
        import highspy
    except ImportError:  # pragma: no cover - HiGHS not installed
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def choose_solver(solver: str | None = None) -> tuple[str, str, dict]:
    """``(name, note, options)`` of the LP solver: HiGHS if installed, else CLARABEL.

    ``solver`` forces a name (it must be installed). The note says why a fallback was taken.
    """
    installed = cp.installed_solvers()
    if solver is not None:
        name = solver.upper()
        if name not in installed:
            raise LPError(
                "solver", f"{solver!r} is not installed", f"use one of {', '.join(installed)}"
            )
        note = ""
    elif "HIGHS" in installed:
        name, note = "HIGHS", ""
    elif "CLARABEL" in installed:  # pragma: no cover - depends on the environment
        name = "CLARABEL"
        note = (
            "HiGHS is not installed (pip install highspy); using CLARABEL, an interior-point "
            "solver: duals are accurate to about 1e-8"
        )
    else:  # pragma: no cover - depends on the environment
        raise LPError("solver", "neither HiGHS nor CLARABEL is installed", "pip install highspy")
    if name == "HIGHS":
        _quiet_highs()
        return name, note, {"output_flag": False}
    return name, note, {}


def solve_checked(problem: cp.Problem, solver: str, options: dict, what: str) -> None:
    """Solve and check the status; raise :class:`LPError` explaining a failure in words."""
    try:
        problem.solve(solver=solver, **options)
    except cp.error.SolverError as err:
        raise LPError("lp", f"{what}: the solver {solver} failed ({err})", "") from None
    status = problem.status
    if status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise LPError(
            "lp",
            f"{what} is infeasible: no allocation satisfies every constraint",
            "check that capacities are positive and the data are finite",
        )
    if status in (cp.UNBOUNDED, cp.UNBOUNDED_INACCURATE):
        raise LPError(
            "lp",
            f"{what} is unbounded: the objective can grow without limit",
            "give some class positive work",
        )
    raise LPError("lp", f"{what}: the solver {solver} returned status {status!r}", "")
