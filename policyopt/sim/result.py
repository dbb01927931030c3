"""What a single-engine run reports (definitions in ``docs/metrics.md``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from policyopt.jsonout import json_ready
from policyopt.sim.engine_sim import BatchRecord, Counters, EngineSimulator
from policyopt.sim.stability import Verdict, verdict
from policyopt.sim.stats import t_interval


@dataclass
class EngineResult:
    """Metrics of one run, over the measured period ``[warmup, horizon]``.

    Rates are requests/s or tokens/s, times seconds, token counts tokens. ``*_ci`` pairs are
    95% batch-means intervals. ``series`` holds the sampled time series (``t``, ``n_system``,
    ``backlog_tokens``, ``kv_tokens``); ``batches`` the batch records when asked for.
    """

    scheduler: str
    rate: float
    load: float
    lambda_star: float
    mu: float
    horizon: float
    warmup: float
    seed: int
    arrived: int
    completed: int
    throughput: float
    throughput_ci: tuple[float, float]
    token_throughput: float
    mean_in_system: float
    mean_in_system_ci: tuple[float, float]
    latency_mean: float
    latency_mean_ci: tuple[float, float]
    latency_p50: float
    latency_p90: float
    latency_p99: float
    ttft_mean: float
    ttft_p50: float
    ttft_p90: float
    ttft_p99: float
    tpot_mean: float
    tpot_p50: float
    tpot_p99: float
    batches: int
    mean_batch_tokens: float
    batch_fill: float
    full_batch_share: float
    non_work_conserving_share: float
    utilization: float
    kv_mean: float
    kv_max: int
    out_of_range_batches: int
    backlog_end: int
    drift: float
    drift_ci: tuple[float, float]
    fluid_drift: float
    drift_threshold: float
    verdict: str
    series: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    batch_records: list[BatchRecord] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The scalar metrics, JSON-ready (:func:`~policyopt.jsonout.json_ready`): intervals
        as ``[low, high]`` lists, undefined (non-finite) values as ``None``; no series, no
        batch records."""
        scalars = [f.name for f in fields(self) if f.name not in ("series", "batch_records")]
        return json_ready({name: getattr(self, name) for name in scalars})


def collect(
    sim: EngineSimulator,
    *,
    rate: float,
    mean_tokens: float,
    mu: float,
    seed: int,
) -> EngineResult:
    """Turn a finished simulator into an :class:`EngineResult`."""
    sim.finish()
    end = min(sim.now, sim.horizon) if sim.now < sim.horizon else sim.horizon
    span = max(end - sim.warmup, 1e-12)
    c: Counters = sim.counters
    warm = sim.warm_counters
    meas = c.minus(warm) if warm is not None else Counters()
    processed_warm = sim.processed_at_warmup if sim.processed_at_warmup >= 0 else sim.processed
    # the batch running at the horizon counts pro rata, so busy time and tokens stay in the window
    start, stop, tokens = sim.last_batch
    over = max(0.0, stop - sim.horizon) if stop > start else 0.0
    over_tokens = tokens * over / (stop - start) if over else 0.0
    rs = sim.req
    n = rs.completed
    done_per_window = sim.done_windows.sums
    thr = float(done_per_window.sum()) / span
    _, thr_lo, thr_hi = sim.done_windows.interval_of_rates()
    area = sim.n_windows_area
    _, n_lo, n_hi = t_interval(area / sim.done_windows.width)
    _, lat_lo, lat_hi = sim.lat_windows.interval_of_means()
    lam_star = mu / mean_tokens
    filled = ~np.isnan(sim.sample_n)
    t = sim.sample_t[filled]
    backlog = sim.sample_backlog[filled]
    v: Verdict = verdict(t, backlog, rate * mean_tokens, mu)
    nan = math.nan
    return EngineResult(
        scheduler=sim.scheduler.label,
        rate=rate,
        load=rate / lam_star,
        lambda_star=lam_star,
        mu=mu,
        horizon=sim.horizon,
        warmup=sim.warmup,
        seed=seed,
        arrived=sim.n_vis,
        completed=sim.completed,
        throughput=thr,
        throughput_ci=(thr_lo, thr_hi),
        token_throughput=(sim.processed - over_tokens - processed_warm) / span,
        mean_in_system=float(area.sum()) / span,
        mean_in_system_ci=(n_lo, n_hi),
        latency_mean=rs.sums["latency"] / n if n else nan,
        latency_mean_ci=(lat_lo, lat_hi),
        latency_p50=rs.latency.quantile(0.5),
        latency_p90=rs.latency.quantile(0.9),
        latency_p99=rs.latency.quantile(0.99),
        ttft_mean=rs.sums["ttft"] / n if n else nan,
        ttft_p50=rs.ttft.quantile(0.5),
        ttft_p90=rs.ttft.quantile(0.9),
        ttft_p99=rs.ttft.quantile(0.99),
        tpot_mean=rs.sums["tpot"] / rs.sums["n_tpot"] if rs.sums["n_tpot"] else nan,
        tpot_p50=rs.tpot.quantile(0.5),
        tpot_p99=rs.tpot.quantile(0.99),
        batches=meas.batches,
        mean_batch_tokens=meas.tokens / meas.batches if meas.batches else nan,
        batch_fill=meas.tokens / (meas.batches * sim.b) if meas.batches else nan,
        full_batch_share=meas.full / meas.batches if meas.batches else nan,
        non_work_conserving_share=meas.not_work_conserving / meas.batches if meas.batches else nan,
        utilization=(meas.busy_time - over) / span,
        kv_mean=meas.kv_area / span,
        kv_max=sim.kv_max,
        out_of_range_batches=meas.out_of_range,
        backlog_end=int(sim.w_cumtok[sim.n_vis - sim.base]) - sim.processed,
        drift=v.drift,
        drift_ci=(v.drift_low, v.drift_high),
        fluid_drift=v.fluid_drift,
        drift_threshold=v.threshold,
        verdict=v.verdict,
        series={
            "t": t,
            "n_system": sim.sample_n[filled],
            "backlog_tokens": backlog,
            "kv_tokens": sim.sample_kv[filled],
        },
        batch_records=sim.batches,
    )
