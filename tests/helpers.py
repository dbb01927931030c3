"""Shared helpers for the tests."""

from __future__ import annotations

import numpy as np

from policyopt.model import EngineSpec, SchedulerSpec
from policyopt.sim.engine_sim import BatchRecord, EngineSimulator, RequestList


def run_requests(
    scheduler: str | SchedulerSpec,
    budget: int,
    arrivals: list[float],
    prompts: list[int],
    outputs: list[int],
    *,
    start_decoding: int = 0,
    start_prefilled: int = 0,
    max_seqs: int | None = None,
    horizon: float = 1e6,
    max_batches: int | None = None,
) -> EngineSimulator:
    """Run an explicit request list to completion (or ``max_batches``), recording batches."""
    from policyopt.model import scheduler_spec

    spec = scheduler_spec(scheduler)
    sim = EngineSimulator(
        EngineSpec(token_budget=budget, max_seqs=max_seqs),
        spec,
        RequestList(arrivals, prompts, outputs),
        horizon=horizon,
        record_batches=True,
        start_decoding=start_decoding,
        start_prefilled=start_prefilled,
    )
    sim.run(max_batches=max_batches)
    return sim


def tokens_per_request(batches: list[BatchRecord]) -> tuple[dict[int, int], dict[int, int]]:
    """Prefill and decode tokens each request received, summed over ``batches``."""
    pre: dict[int, int] = {}
    dec: dict[int, int] = {}
    for rec in batches:
        for rid, c in rec.prefill:
            pre[rid] = pre.get(rid, 0) + c
        for rid in rec.decode:
            dec[rid] = dec.get(rid, 0) + 1
    return pre, dec


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
