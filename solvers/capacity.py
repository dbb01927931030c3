"""Single-engine capacity (Theorem 2 of Li, Dai, Peng, arXiv 2504.07347).

The largest token rate any scheduler can sustain on an engine with token budget ``b`` is

    mu = max_{1 <= n <= b} n / t(n)            tokens/s

and a workload with arrival rate ``lambda`` and mean prompt/output tokens ``m_p``/``m_d`` is
carried (by every work-conserving scheduler) exactly when ``lambda (m_p + m_d) < mu``, i.e.
below ``lambda* = mu / (m_p + m_d)`` requests/s. Above it the token backlog grows at the fluid
rate ``lambda (m_p + m_d) - mu``.

For the ``affine`` batch-time model ``t`` depends on the prefill/decode mix; the capacity uses
the workload's mix (prefill share ``m_p / (m_p + m_d)``) and no KV-read term, which is an upper
bound on the capacity when ``ckv > 0``. With ``max_seqs`` the capacity comes from the
batch-size region LP along the workload's mix (:mod:`policyopt.solvers.batch_size_region`).

The formula itself lives with the engine (:meth:`policyopt.model.engine.EngineSpec.token_capacity`);
this module adds the workload, the request-slot limit and the budget sweep.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from policyopt.model.engine import EngineSpec
from policyopt.model.workload import Workload


def batch_seconds(engine: EngineSpec, n: np.ndarray, prefill_share: float = 0.5) -> np.ndarray:
    """Seconds of batches of ``n`` tokens on ``engine``: :meth:`EngineSpec.batch_seconds`."""
    return engine.batch_seconds(n, prefill_share)


@dataclass(frozen=True)
class Capacity:
    """Capacity of one engine for one workload.

    ``mu`` tokens/s, reached by batches of ``best_batch`` tokens taking ``batch_ms`` ms;
    ``mean_tokens`` = ``m_p + m_d``; ``lambda_star`` requests/s; ``load`` = ``lambda /
    lambda_star`` for the workload's own rate.
    """

    token_budget: int
    mu: float
    best_batch: int
    batch_ms: float
    mean_prompt: float
    mean_output: float
    mean_tokens: float
    lambda_star: float
    rate: float
    load: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def token_capacity(engine: EngineSpec, prefill_share: float = 0.5) -> tuple[float, int]:
    """``(mu, n*)``: the largest ``n / t(n)`` over ``1 <= n <= b`` in tokens/s, and its ``n``.

    Ties go to the smallest ``n``. :meth:`EngineSpec.token_capacity`; ``max_seqs`` is not
    applied (:func:`llm_capacity` applies it).
    """
    return engine.token_capacity(prefill_share)


def llm_capacity(engine: EngineSpec, prefill_share: float = 0.5) -> float:
    """``mu`` of an LLM engine in tokens/s at the given prefill share of its tokens.

    Without ``max_seqs``, the token capacity (:func:`token_capacity`); with it, the largest
    token rate along that prefill/decode mix inside the batch-size region
    (:func:`policyopt.solvers.batch_size_region.ray_capacity`, an LP: CVXPY is loaded only then).
    """
    if engine.max_seqs is None:
        return engine.token_capacity(prefill_share)[0]
    from policyopt.solvers.batch_size_region import ray_capacity  # loads CVXPY

    return ray_capacity(engine, prefill_share)


def capacity_point(engine: EngineSpec, prefill_share: float) -> tuple[float, int, float]:
    """``(mu, n, t)``: the capacity ``mu`` (tokens/s) at the given prefill share of the tokens,
    the batch that reaches it (``n`` tokens) and that batch's time ``t`` (seconds).

    Without ``max_seqs``, :meth:`EngineSpec.token_capacity`; with it, the batch-size region LP
    along the mix, and the configuration its optimal time-sharing uses most.
    """
    if engine.max_seqs is not None:
        from policyopt.solvers.batch_size_region import batch_region  # loads CVXPY

        point = batch_region(engine, prefill_share, 1.0 - prefill_share)
        x, y, _, ms, _ = max(point.corners, key=lambda c: c[4])
        return float(point.theta), int(x + y), ms / 1000.0
    mu, best = engine.token_capacity(prefill_share)
    return mu, best, float(engine.batch_seconds(np.array([best]), prefill_share)[0])


def capacity(engine: EngineSpec, workload: Workload) -> Capacity:
    """Capacity of ``engine`` for ``workload`` (see the module docstring).

    With ``max_seqs`` the request-slot limit can bind: ``mu`` is then the largest token rate
    along the workload's prefill/decode mix inside the batch-size capacity region (an LP over
    time-sharing of batch configurations, solved with CVXPY: ``docs/capacity.md``), and
    ``best_batch``/``batch_ms`` describe the configuration the optimal time-sharing uses most.
    """
    mp, md = workload.mean_prompt(), workload.mean_output()
    mu, best, t_best = capacity_point(engine, mp / (mp + md))
    lam_star = mu / (mp + md)
    return Capacity(
        token_budget=engine.token_budget,
        mu=mu,
        best_batch=best,
        batch_ms=1000.0 * t_best,
        mean_prompt=mp,
        mean_output=md,
        mean_tokens=mp + md,
        lambda_star=lam_star,
        rate=workload.rate,
        load=workload.rate / lam_star,
    )


def budget_sweep(
    engine: EngineSpec, workload: Workload, budgets: list[int] | None = None
) -> list[Capacity]:
    """Capacity and full-batch time as the token budget varies: what a larger ``b`` buys.

    Default budgets: powers of two from 64 up to 4x the engine's budget, plus the budget.
    """
    if budgets is None:
        budgets = sorted(
            {2**k for k in range(6, 15) if 2**k <= 4 * engine.token_budget} | {engine.token_budget}
        )
    return [capacity(engine.model_copy(update={"token_budget": int(b)}), workload) for b in budgets]
