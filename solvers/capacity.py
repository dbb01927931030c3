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
batch-size region LP along the workload's mix (:func:`capacity`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from policyopt.model.batch_time import AffineBatchTime
from policyopt.model.engine import EngineSpec
from policyopt.model.workload import Workload


def batch_seconds(engine: EngineSpec, n: np.ndarray, prefill_share: float = 0.5) -> np.ndarray:
    """Time in seconds of batches of ``n`` tokens on ``engine`` (vectorized)."""
    bt = engine.batch_time
    if isinstance(bt, AffineBatchTime):
        return bt.seconds_for_tokens(n, prefill_share)
    return bt.seconds_for_tokens(n)


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

    Ties go to the smallest ``n``.
    """
    n = np.arange(1, engine.token_budget + 1)
    rate = n / batch_seconds(engine, n, prefill_share)
    best = int(np.argmax(rate))
    return float(rate[best]), int(n[best])


def capacity(engine: EngineSpec, workload: Workload) -> Capacity:
    """Capacity of ``engine`` for ``workload`` (see the module docstring).

    With ``max_seqs`` the request-slot limit can bind: ``mu`` is then the largest token rate
    along the workload's prefill/decode mix inside the batch-size capacity region (DESIGN
    2.2; an LP over time-sharing of batch configurations, solved with CVXPY), and
    ``best_batch``/``batch_ms`` describe the configuration the optimal time-sharing uses most.
    """
    mp, md = workload.mean_prompt(), workload.mean_output()
    share = mp / (mp + md)
    if engine.max_seqs is not None:
        from policyopt.solvers.static_planning import batch_region

        point = batch_region(engine, share, 1.0 - share)
        mu = float(point.theta)
        x, y, _, ms, _ = max(point.corners, key=lambda c: c[4])
        best, t_best = int(x + y), ms / 1000.0
    else:
        mu, best = token_capacity(engine, share)
        t_best = float(batch_seconds(engine, np.array([best]), share)[0])
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
