"""The batch-size capacity region of one LLM engine whose request slots (``max_seqs``) can bind.

With ``k_max = max_seqs``, a batch configuration ``(x prefill tokens, y decode tokens, r prefill
requests)`` is feasible when ``x + y <= b`` and ``y + r <= k_max`` (``r = ceil(x / max_chunk)``:
a prefill request contributes at most ``max_chunk`` tokens, default ``b``), and runs at the rate
vector ``(x, y) / t(x, y)``. The capacity region in the plane of (prefill, decode) token rates is
the convex hull of those vectors and the origin: time-sharing weights ``w_c >= 0`` with
``sum_c w_c <= 1``. :class:`BatchRegionLP` answers whether a pair of rates is inside and by how
much it can be scaled (``theta*``); :func:`ray_capacity` is the largest total token rate along a
given prefill/decode mix, the capacity of an engine whose ``max_seqs`` binds. Only the two
extreme configurations of each batch size ``n = x + y`` are enumerated (the feasible ``y`` for a
given ``n`` form an interval, and ``(x, y) -> (x, y) / t`` maps a segment to a segment for every
batch-time model here), so the LP has at most ``2 b`` columns.

:func:`region_vertices` lists the region's vertices counterclockwise from the origin, each as a
batch configuration (tokens per batch, batch ms) and as a rate vector (tokens/s);
:func:`capacity_region` places a workload's operating point ``(lambda m_p, lambda m_d)`` in the
region. ``docs/networks.md`` (batch-size region) and ``docs/capacity.md`` (the request-cap
region) show them at work.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np

from policyopt.model.batch_time import AffineBatchTime
from policyopt.model.engine import EngineSpec
from policyopt.model.workload import Workload
from policyopt.solvers.lp import LPError, choose_solver, solve_checked


def _batch_seconds(engine: EngineSpec, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Seconds of batches with ``x`` prefill and ``y`` decode tokens (no KV-read term)."""
    bt = engine.batch_time
    if isinstance(bt, AffineBatchTime):
        return (bt.c_ms + bt.cp_ms * x + bt.cd_ms * y) / 1000.0
    return np.asarray(bt.seconds_for_tokens(x + y), dtype=float)


def batch_configurations(engine: EngineSpec, max_chunk: int | None = None) -> np.ndarray:
    """The extreme batch configurations of ``engine``: rows ``(x, y, r, t_seconds)``.

    For each batch size ``n = x + y <= b``, the configuration with no decode tokens and the
    one with the most decode tokens that ``k_max`` allows (``y + ceil(x / max_chunk) <= k_max``).
    """
    b = engine.token_budget
    chunk = int(max_chunk) if max_chunk else b
    if chunk < 1:
        raise LPError("max_chunk", f"{max_chunk} is not >= 1", "give a token count")
    n = np.arange(1, b + 1)
    kmax = engine.max_seqs
    if kmax is None:
        ystar = n.copy()
        x0_ok = np.ones(b, dtype=bool)
    else:
        ygrid = np.arange(0, min(b, kmax) + 1)
        ok = (ygrid[None, :] <= n[:, None]) & (
            ygrid[None, :] + np.ceil((n[:, None] - ygrid[None, :]) / chunk) <= kmax
        )
        x0_ok = ok[:, 0]
        ystar = np.where(ok.any(axis=1), np.max(np.where(ok, ygrid[None, :], -1), axis=1), -1)
    rows = []
    for xs, ys, keep in ((n, np.zeros(b, dtype=int), x0_ok), (n - ystar, ystar, ystar >= 0)):
        xs, ys = xs[keep], ys[keep]
        rs = np.ceil(xs / chunk)
        rows.append(np.column_stack([xs, ys, rs, _batch_seconds(engine, xs, ys)]))
    conf = np.unique(np.vstack(rows), axis=0)
    return conf


@dataclass(frozen=True)
class RegionPoint:
    """Whether ``(prefill_rate, decode_rate)`` (tokens/s) is in an engine's capacity region.

    ``theta``: the largest factor by which both rates can grow together and stay inside;
    ``inside``: ``theta >= 1`` (within 1e-9; strictly inside, i.e. carried with margin, when
    ``theta > 1``); ``corners``: the batch configurations the optimal time-sharing uses, as
    ``(x prefill tokens, y decode tokens, r prefill requests, batch ms, time fraction)``.
    """

    prefill_rate: float
    decode_rate: float
    theta: float
    inside: bool
    corners: tuple[tuple[int, int, int, float, float], ...] = field(default=())
    status: str = ""


@dataclass(frozen=True)
class RegionVertex:
    """One vertex of an engine's capacity region: a batch configuration and its rate vector.

    ``prefill_tokens`` (``x``) and ``decode_tokens`` (``y``) per batch, ``prefill_requests``
    (``r``, the request slots its prefill chunks take), ``batch_ms`` (the batch time, ms);
    ``prefill_rate = x / t`` and ``decode_rate = y / t`` in tokens/s, the rates of an engine
    that runs this batch back to back. The origin (an idle engine) runs no batch: its token
    counts and rates are 0 and its ``batch_ms`` is NaN.
    """

    prefill_tokens: int
    decode_tokens: int
    prefill_requests: int
    batch_ms: float
    prefill_rate: float
    decode_rate: float


class BatchRegionLP:
    """The batch-size region LP of one engine (see the module docstring), compiled once."""

    def __init__(
        self, engine: EngineSpec, max_chunk: int | None = None, solver: str | None = None
    ) -> None:
        self.engine = engine
        self.configs = batch_configurations(engine, max_chunk)
        self.solver, self.solver_note, self._options = choose_solver(solver)
        x, y, t = self.configs[:, 0], self.configs[:, 1], self.configs[:, 3]
        self.rates = np.column_stack([x / t, y / t])  # tokens/s of each configuration
        scale = float(self.rates.max())  # solve in units of the largest rate (conditioning)
        self._scale = scale
        self.target = cp.Parameter(2, nonneg=True, name="target")
        self.w = cp.Variable(len(self.configs), nonneg=True, name="time_share")
        self.theta = cp.Variable(name="theta")
        self.problem = cp.Problem(
            cp.Maximize(self.theta),
            [
                (self.rates.T / scale) @ self.w >= self.theta * self.target,
                cp.sum(self.w) <= 1,
            ],
        )
        if not self.problem.is_dpp():  # pragma: no cover - guarded by construction
            raise LPError("lp", "the batch-region LP is not DPP", "report this bug")

    def solve(self, prefill_rate: float, decode_rate: float) -> RegionPoint:
        """Is ``(prefill_rate, decode_rate)`` tokens/s inside the region; by what margin."""
        target = np.array([prefill_rate, decode_rate], dtype=float)
        if not np.all(np.isfinite(target)) or np.any(target < 0) or not np.any(target > 0):
            raise LPError(
                "rates",
                f"({prefill_rate!r}, {decode_rate!r}) is not a pair of rates >= 0, not both 0",
                "give prefill and decode token rates",
            )
        self.target.value = target / self._scale
        solve_checked(self.problem, self.solver, self._options, "the batch-size region LP")
        theta = float(self.theta.value)
        w = np.asarray(self.w.value, dtype=float)
        corners = tuple(
            (int(c[0]), int(c[1]), int(c[2]), 1000.0 * float(c[3]), float(wi))
            for c, wi in zip(self.configs, w, strict=True)
            if wi > 1e-9
        )
        return RegionPoint(
            prefill_rate=float(prefill_rate),
            decode_rate=float(decode_rate),
            theta=theta,
            inside=theta >= 1.0 - 1e-9,
            corners=corners,
            status=str(self.problem.status),
        )

    def _hull_rows(self) -> list[int]:
        """Rows of :attr:`configs` at the region's vertices, counterclockwise from the origin
        (``-1``). A point on the segment between its neighbours (within rounding) is no vertex:
        e.g. on the staircase the configurations ``(128 k - 99, 99)`` at the top of each step
        are collinear, so only the first and the last of them are vertices."""
        from scipy.spatial import ConvexHull

        pts = np.vstack([[0.0, 0.0], self.rates])
        idx = [int(i) for i in ConvexHull(pts).vertices]  # counterclockwise in 2-D
        start = idx.index(0)  # the origin is always a vertex: rates are >= 0, on both axes
        idx = idx[start:] + idx[:start]
        tol = 1e-9 * float(np.abs(pts).max()) ** 2
        j = 1
        while j < len(idx) and len(idx) > 3:
            a, p, c = pts[idx[j - 1]], pts[idx[j]], pts[idx[(j + 1) % len(idx)]]
            cross = (p[0] - a[0]) * (c[1] - a[1]) - (p[1] - a[1]) * (c[0] - a[0])
            if abs(cross) <= tol:
                del idx[j]
            else:
                j += 1
        rows = []
        for i in idx:
            if i == 0:
                rows.append(-1)
                continue
            # configurations with the same rate vector: the shortest batch, then the smallest
            same = np.flatnonzero(np.all(np.isclose(self.rates, pts[i], rtol=1e-12), axis=1))
            x, y, t = self.configs[same, 0], self.configs[same, 1], self.configs[same, 3]
            rows.append(int(same[np.lexsort((x + y, t))[0]]))
        return rows

    def vertices(self) -> tuple[RegionVertex, ...]:
        """The region's vertices, counterclockwise from the origin (:class:`RegionVertex`:
        tokens per batch, batch ms, tokens/s)."""
        out = []
        for row in self._hull_rows():
            if row < 0:
                out.append(RegionVertex(0, 0, 0, math.nan, 0.0, 0.0))
                continue
            x, y, r, t = self.configs[row]
            pre, dec = self.rates[row]
            out.append(
                RegionVertex(int(x), int(y), int(r), float(1000.0 * t), float(pre), float(dec))
            )
        return tuple(out)

    def hull(self) -> np.ndarray:
        """Vertices ``(prefill tokens/s, decode tokens/s)`` of the region, counterclockwise
        from the origin."""
        return np.array([[v.prefill_rate, v.decode_rate] for v in self.vertices()])


@functools.lru_cache(maxsize=64)
def _region_lp(engine: EngineSpec, max_chunk: int | None) -> BatchRegionLP:
    return BatchRegionLP(engine, max_chunk)


def batch_region(
    engine: EngineSpec, prefill_rate: float, decode_rate: float, max_chunk: int | None = None
) -> RegionPoint:
    """:meth:`BatchRegionLP.solve` with a cached LP per engine."""
    return _region_lp(engine, max_chunk).solve(prefill_rate, decode_rate)


def ray_capacity(engine: EngineSpec, prefill_share: float, max_chunk: int | None = None) -> float:
    """Largest total token rate (tokens/s) with the given prefill share the engine sustains.

    Without ``max_seqs`` (and a staircase/piecewise batch time) this is the Theorem-2
    capacity ``max_n n / t(n)``; ``max_seqs`` can only lower it.
    """
    share = float(prefill_share)
    if not 0.0 <= share <= 1.0 or math.isnan(share):
        raise LPError("prefill_share", f"{prefill_share!r} is not in [0, 1]", "")
    return batch_region(engine, share, 1.0 - share, max_chunk).theta


def region_vertices(engine: EngineSpec, max_chunk: int | None = None) -> tuple[RegionVertex, ...]:
    """:meth:`BatchRegionLP.vertices` with a cached LP per engine: the vertices of the
    capacity region counterclockwise from the origin, as batch configurations (prefill and
    decode tokens per batch, batch ms) and as rates (tokens/s)."""
    return _region_lp(engine, max_chunk).vertices()


@dataclass(frozen=True)
class RegionReport:
    """An engine's capacity region and where a workload's operating point lies in it.

    ``vertices``: :func:`region_vertices`. ``rate``: requests/s (summed over the request
    classes given); ``mean_prompt``/``mean_output``: ``m_p``/``m_d``, tokens per request
    (rate-weighted over the classes); the operating point is ``prefill_rate = lambda m_p`` and
    ``decode_rate = lambda m_d`` tokens/s. ``theta``: how far the point can be scaled and stay
    inside (``inside``: ``theta >= 1`` within 1e-9; ``on_boundary``: ``theta = 1`` within
    1e-6, inside with no margin); ``rate_max = theta lambda``: the largest
    arrival rate (requests/s) the region carries along the workload's mix; ``corners``: the
    batch configurations whose time-sharing reaches ``theta`` times the point, as
    :attr:`RegionPoint.corners` (``x``, ``y``, ``r``, batch ms, time fraction).
    """

    vertices: tuple[RegionVertex, ...]
    rate: float
    mean_prompt: float
    mean_output: float
    prefill_rate: float
    decode_rate: float
    theta: float
    inside: bool
    on_boundary: bool
    rate_max: float
    corners: tuple[tuple[int, int, int, float, float], ...]


def capacity_region(
    engine: EngineSpec, workloads: Workload | Sequence[Workload], max_chunk: int | None = None
) -> RegionReport:
    """The capacity region of ``engine`` and the operating point of ``workloads`` in it.

    ``workloads``: one workload, or the request classes sharing the engine (their prefill and
    decode token rates add up). See :class:`RegionReport`.
    """
    group = [workloads] if isinstance(workloads, Workload) else list(workloads)
    if not group:
        raise LPError("workloads", "no workload given", "give a workload or request classes")
    rate = math.fsum(w.rate for w in group)
    prefill = math.fsum(w.rate * w.mean_prompt() for w in group)
    decode = math.fsum(w.rate * w.mean_output() for w in group)
    lp = _region_lp(engine, max_chunk)
    point = lp.solve(prefill, decode)
    return RegionReport(
        vertices=lp.vertices(),
        rate=rate,
        mean_prompt=prefill / rate,
        mean_output=decode / rate,
        prefill_rate=prefill,
        decode_rate=decode,
        theta=point.theta,
        inside=point.inside,
        on_boundary=abs(point.theta - 1.0) <= 1e-6,
        rate_max=point.theta * rate,
        corners=point.corners,
    )
