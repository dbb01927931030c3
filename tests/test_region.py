"""The request-cap capacity region of one engine: its vertices in batch units, the operating
point of a workload in it, and the simulator staying inside it.

Hand computations use the default staircase ``t(n) = 11.28 + 35.47 ceil(n / 128)`` ms:
``t(128) = 46.75``, ``t(1024) = 11.28 + 8 * 35.47 = 295.04`` ms.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from policyopt import Scenario
from policyopt.model import Constant, EngineSpec, Workload, build
from policyopt.model.workload import DeterministicArrivals
from policyopt.sim import simulate
from policyopt.sim.engine_sim import BatchRecord
from policyopt.solvers.batch_size_region import (
    BatchRegionLP,
    RegionVertex,
    batch_region,
    capacity_region,
    region_vertices,
)
from policyopt.solvers.capacity import capacity

T128, T1024 = 46.75, 295.04  # ms


def batches(vertices: tuple[RegionVertex, ...]) -> list[tuple[int, int, float]]:
    """``(x prefill tokens, y decode tokens, batch ms)`` of each vertex (the origin: nan ms)."""
    return [(v.prefill_tokens, v.decode_tokens, v.batch_ms) for v in vertices]


def assert_vertices(
    vertices: tuple[RegionVertex, ...], expected: list[tuple[int, int, float]]
) -> None:
    """The vertices are exactly ``expected`` (the origin first, with nan ms), and each rate
    vector is its batch's tokens divided by its batch time."""
    got = batches(vertices)
    assert [(x, y) for x, y, _ in got] == [(x, y) for x, y, _ in expected]
    assert math.isnan(got[0][2]) and got[0][:2] == (0, 0)
    assert [ms for _, _, ms in got[1:]] == pytest.approx([ms for _, _, ms in expected[1:]])
    for v in vertices[1:]:
        assert v.prefill_rate == pytest.approx(1000 * v.prefill_tokens / v.batch_ms, rel=1e-12)
        assert v.decode_rate == pytest.approx(1000 * v.decode_tokens / v.batch_ms, rel=1e-12)


def vertex_c_workload(rate: float = 1 / 0.4675) -> Workload:
    """One request of 290 prompt and 990 output tokens every 467.5 ms (at ``rate`` 1/0.4675)."""
    return Workload(
        arrival=DeterministicArrivals(rate=rate),
        prompt=Constant(value=290),
        output=Constant(value=990),
    )


# ----------------------------------------------------------------------------- vertices


def test_vertices_of_budget_128_with_100_requests() -> None:
    """Every batch of 1..128 tokens takes one step, 46.75 ms, so the region is the polygon of
    the feasible (x, y) scaled by 1 / 46.75 ms: x + y <= 128 and y + ceil(x / 128) <= 100.
    Its corners: 128 prefill tokens; 29 prefill + 99 decode (99 decode slots and one prefill
    slot, filling the budget); 100 decode tokens (every slot decoding, no prefill)."""
    engine = EngineSpec(token_budget=128, max_seqs=100)
    vertices = region_vertices(engine)
    assert_vertices(vertices, [(0, 0, math.nan), (128, 0, T128), (29, 99, T128), (0, 100, T128)])
    assert [v.prefill_requests for v in vertices] == [0, 1, 1, 0]
    c = vertices[2]
    assert (c.prefill_rate, c.decode_rate) == pytest.approx((620.3208556, 2117.6470588), rel=1e-9)
    # hull() gives the same points as rates
    assert BatchRegionLP(engine).hull() == pytest.approx(
        np.array([[v.prefill_rate, v.decode_rate] for v in vertices])
    )


def test_vertices_of_budget_1024_with_100_requests() -> None:
    """With b = 1024 the largest batches take 8 steps (295.04 ms). Hand computation:

    * prefill only: n / t(n) is largest at the top of the last step, (1024, 0) per 295.04 ms;
    * 99 decode tokens and one prefill chunk filling the batch: (128 k - 99, 99) per
      t(128 k). These eight points are collinear (a projective image of a line in k: both
      coordinates are affine in k over the same affine t), so only their ends are vertices,
      (925, 99) per 295.04 ms and (29, 99) per 46.75 ms;
    * decode only: at most 100 tokens, (0, 100) per 46.75 ms.
    """
    engine = EngineSpec(token_budget=1024, max_seqs=100)
    vertices = region_vertices(engine)
    assert_vertices(
        vertices,
        [(0, 0, math.nan), (1024, 0, T1024), (925, 99, T1024), (29, 99, T128), (0, 100, T128)],
    )
    # the intermediate points of the edge are on the boundary, not vertices: theta = 1
    lp = BatchRegionLP(engine)
    for k in range(2, 8):
        t = (11.28 + 35.47 * k) / 1000
        assert lp.solve((128 * k - 99) / t, 99 / t).theta == pytest.approx(1.0, abs=1e-9)
    # a larger budget adds vertices but keeps (29, 99) per 46.75 ms on the boundary
    assert batch_region(engine, 29 / 0.04675, 99 / 0.04675).theta == pytest.approx(1, abs=1e-9)


@pytest.mark.parametrize(
    ("budget", "best", "ms"),
    [(512, 512, 153.16), (400, 384, 117.69), (128, 128, T128), (100, 100, T128)],
)
def test_without_max_seqs_the_region_is_the_triangle_of_the_best_batch(
    budget: int, best: int, ms: float
) -> None:
    """No request cap: any mix of a best batch size n* runs in t(n*), so the region is the
    triangle prefill + decode <= mu = n* / t(n*). With b = 400, a 400-token batch pays a
    fourth step (153.16 ms) and 384 tokens in three steps (117.69 ms) do better."""
    vertices = region_vertices(EngineSpec(token_budget=budget))
    assert_vertices(vertices, [(0, 0, math.nan), (best, 0, ms), (0, best, ms)])
    mu = EngineSpec(token_budget=budget).token_capacity()[0]
    assert vertices[1].prefill_rate == pytest.approx(mu, rel=1e-12)


def test_every_vertex_is_on_the_boundary_and_edges_bound_the_region() -> None:
    for engine in (
        EngineSpec(token_budget=512, max_seqs=64),
        EngineSpec(token_budget=1024, max_seqs=100),
        build(
            EngineSpec,
            {
                "token_budget": 256,
                "max_seqs": 20,
                "batch_time": {"kind": "affine", "c_ms": 8.0, "cp_ms": 0.05, "cd_ms": 0.3},
            },
        ),
    ):
        lp = BatchRegionLP(engine)
        pts = lp.hull()
        assert pts[0] == pytest.approx([0.0, 0.0])
        for p, q in itertools.pairwise(pts[1:]):  # the edges away from the origin
            assert lp.solve(*p).theta == pytest.approx(1.0, abs=1e-7)
            assert lp.solve(*((p + q) / 2)).theta == pytest.approx(1.0, abs=1e-7)
        # counterclockwise: every turn is to the left
        for a, b, c in zip(pts, np.roll(pts, -1, axis=0), np.roll(pts, -2, axis=0), strict=True):
            assert (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) > 0


# ----------------------------------------------------------------------------- operating point


def test_the_vertex_c_workload_sits_on_vertex_c() -> None:
    """290 prefill and 990 decode tokens every 467.5 ms = 10 batches of 46.75 ms, each with
    29 prefill and 99 decode tokens: the operating point is vertex C itself."""
    engine = EngineSpec(token_budget=128, max_seqs=100)
    region = capacity_region(engine, vertex_c_workload())
    assert region.prefill_rate == pytest.approx(290 / 0.4675, rel=1e-12)
    assert region.decode_rate == pytest.approx(990 / 0.4675, rel=1e-12)
    assert region.theta == pytest.approx(1.0, abs=1e-9)
    assert region.inside and region.on_boundary
    assert region.rate_max == pytest.approx(1 / 0.4675, rel=1e-9)
    assert [(x, y, ms, round(w, 9)) for x, y, _, ms, w in region.corners] == [
        (29, 99, pytest.approx(T128), 1.0)
    ]
    # the largest rate along the mix is the capacity's lambda* (the same LP)
    assert region.rate_max == pytest.approx(
        capacity(engine, vertex_c_workload()).lambda_star, rel=1e-9
    )
    # at 90% of the rate theta = 1 / 0.9, at 110% the point is outside
    low = capacity_region(engine, vertex_c_workload(0.9 / 0.4675))
    assert low.theta == pytest.approx(1 / 0.9, rel=1e-9) and low.inside and not low.on_boundary
    high = capacity_region(engine, vertex_c_workload(1.1 / 0.4675))
    assert high.theta == pytest.approx(1 / 1.1, rel=1e-9) and not high.inside


def test_request_classes_add_their_token_rates() -> None:
    engine = EngineSpec(token_budget=128, max_seqs=100)
    half = vertex_c_workload(0.5 / 0.4675)
    chat = Workload(
        arrival=DeterministicArrivals(rate=3.0),
        prompt=Constant(value=10),
        output=Constant(value=20),
    )
    both = capacity_region(engine, [half, chat])
    assert both.rate == pytest.approx(0.5 / 0.4675 + 3.0)
    assert both.prefill_rate == pytest.approx(145 / 0.4675 + 30.0)
    assert both.decode_rate == pytest.approx(495 / 0.4675 + 60.0)
    assert both.mean_prompt == pytest.approx(both.prefill_rate / both.rate)
    alone = batch_region(engine, both.prefill_rate, both.decode_rate)
    assert both.theta == pytest.approx(alone.theta, rel=1e-12)


# ----------------------------------------------------------------------------- simulation


def measured_rates(records: list[BatchRecord], start: float, end: float) -> tuple[float, float]:
    """Prefill and decode tokens/s of the batches run entirely within ``[start, end]`` s."""
    pre = dec = 0
    for rec in records:
        if rec.start >= start and rec.end <= end:
            pre += sum(c for _, c in rec.prefill)
            dec += len(rec.decode)
    return pre / (end - start), dec / (end - start)


@pytest.mark.parametrize(
    ("budget", "max_seqs", "scheduler", "loads"),
    [
        (512, 32, "sarathi", (0.5, 0.9, 1.3)),
        (512, 32, "orca", (0.9, 1.3)),
        (512, 16, "vllm", (0.7,)),
        (256, 64, "sarathi", (0.95,)),
    ],
)
def test_simulated_throughput_never_leaves_the_region(
    budget: int, max_seqs: int, scheduler: str, loads: tuple[float, ...]
) -> None:
    """Every batch the simulator runs is a feasible configuration and it runs them one after
    another, so the token rates measured over any window lie in the region: theta >= 1,
    stable or not (here the decode-first Sarathi-Serve with 32 slots stays well inside,
    theta about 1.14, even at 1.3 times the region's capacity)."""
    engine = EngineSpec(token_budget=budget, max_seqs=max_seqs)
    base = build(Scenario, {"engine": engine, "scheduler": scheduler})
    lam_star = capacity(engine, base.workload).lambda_star
    for load in loads:
        sc = build(
            Scenario,
            {
                "engine": engine,
                "scheduler": scheduler,
                "workload": base.workload.with_rate(load * lam_star),
                "run": {"horizon_s": 120.0, "seed": 3},
            },
        )
        result = simulate(sc, record_batches=True)
        pre, dec = measured_rates(result.batch_records, 12.0, 120.0)
        theta = batch_region(engine, pre, dec).theta
        assert theta >= 1 - 1e-6, (scheduler, load, pre, dec, theta)
        if load < 0.8:  # stable: it carries the offered tokens, well inside
            offered = load * lam_star * base.workload.mean_tokens()
            assert pre + dec == pytest.approx(offered, rel=0.1)
            assert theta > 1.1


def test_sarathi_runs_at_vertex_c() -> None:
    """Sarathi-Serve at b = 128 carries the vertex-C workload: after its start-up (which
    ends at about 330 s: until then some batches hold 98 decode tokens) every batch is 29
    prefill + 99 decode tokens, and the measured rates are vertex C, on the boundary."""
    sc = build(
        Scenario,
        {
            "engine": {"token_budget": 128, "max_seqs": 100},
            "scheduler": "sarathi",
            "workload": vertex_c_workload(),
            "run": {"horizon_s": 600.0, "seed": 0},
        },
    )
    result = simulate(sc, record_batches=True)
    pre, dec = measured_rates(result.batch_records, 400.0, 600.0)
    assert (pre, dec) == pytest.approx((290 / 0.4675, 990 / 0.4675), rel=0.001)
    theta = batch_region(sc.engine, pre, dec).theta
    assert 1 - 1e-6 <= theta < 1.001
    late = [r for r in result.batch_records if r.start >= 400.0]
    shapes = {(sum(c for _, c in r.prefill), len(r.decode)) for r in late}
    assert shapes == {(29, 99)}
