"""Optimal control of small exponential station networks: relative value iteration on the
truncated, uniformized Markov decision process (``docs/optimal.md``).

A network qualifies when every engine is a one-server station serving its classes
preemptive-resume, every class has exponential service times and one station, every workflow
brings Poisson arrivals, and routing after a class is a next class, an exit or a random choice
among them (no forks, no eligible sets). The state is then the vector ``x`` of jobs per class;
the decision at each station with work is which of its non-empty classes gets the server
(work-conserving: allowed to idle, the optimizer of a truncated network keeps a class full so
that its arrivals are lost); the cost is the holding cost rate ``sum_k h_k x_k`` per second.

The state space is truncated at ``caps``: class ``k`` holds at most ``caps[k]`` jobs. An
exogenous arrival to a full class is lost, and charged ``loss_cost[k]`` (zero unless given); a
completion whose next class is full is blocked (the job stays where it is, as if the service
had not ended). Uniformized at ``Lambda = sum_k alpha_k + sum_j max_{k at j} mu_k`` events per
second, the Bellman operator is

    (T V)(x) = ( h.x + sum_k alpha_k V(x + e_k)   [at x_k = caps[k]: V(x) + loss_cost[k]]
                 + sum_j [ M_j V(x) + min_{k at j, x_k > 0} mu_k (E V(x after k) - V(x)) ]
               ) / Lambda

(``M_j``: the largest service rate at station ``j``; a station without work adds
``M_j V(x)`` alone). Relative value iteration ``V <- T V - (T V)(0)`` converges, and after
every sweep

    Lambda min_x (T V - V)(x)  <=  optimal average cost  <=  Lambda max_x (T V - V)(x)

(Odoni's bounds), so the answer comes with an interval; the iteration stops when its width is
below ``tol`` times the lower end. A static priority is evaluated by the same iteration with
the minimum replaced by its first non-empty class at each station, and any stationary policy
by its table of actions (:func:`evaluate_table`, which may idle). The optimal cost of the
truncated process approaches that of the network as the caps grow; :func:`stationary` gives
the stationary distribution of a solution's policy, and with it the probability of sitting at
a cap (small when the caps are wide enough) and a second value of the average cost.

The sweeps run in a compiled kernel (numba); :func:`bellman_reference` is the same operator in
numpy, the reference the tests compare it against.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from policyopt.errors import SpecError
from policyopt.model.network import EXIT, NetworkSpec

MAX_STATES = 50_000_000
"""The largest truncated state space :func:`solve` accepts (a few float arrays of this size
must fit in memory)."""


@dataclass(frozen=True)
class ChainModel:
    """A qualifying network as arrays (per class ``k``; ``J`` stations).

    ``caps`` (jobs), ``strides`` (of the flattened state, C order), ``h`` (holding cost per
    job-second), ``alpha`` (exogenous arrivals/s), ``mu`` (service completions/s while
    served), ``station`` (index), ``exit_prob`` (probability of leaving after service), the
    routing in CSR form (``r_ptr``, ``r_tgt``, ``r_prob``), ``M`` (largest rate per station)
    and ``Lambda`` (the uniformization rate, events/s); ``loss_cost``: the cost charged for
    each arrival lost at a full class (cost units, as ``h_k`` times seconds).
    """

    classes: tuple[str, ...]
    stations: tuple[str, ...]
    caps: np.ndarray
    strides: np.ndarray
    h: np.ndarray
    alpha: np.ndarray
    mu: np.ndarray
    station: np.ndarray
    exit_prob: np.ndarray
    r_ptr: np.ndarray
    r_tgt: np.ndarray
    r_prob: np.ndarray
    M: np.ndarray
    Lambda: float
    loss_cost: np.ndarray

    @property
    def n_states(self) -> int:
        return int(np.prod(self.caps + 1))

    def counts(self) -> np.ndarray:
        """The job counts of every state: shape ``(classes, states)``, column ``s`` is the
        state of flat index ``s``."""
        return np.indices(tuple(int(c) + 1 for c in self.caps)).reshape(len(self.caps), -1)

    def state_index(self, x: Sequence[int]) -> int:
        """The flat index of the job counts ``x`` (each within its cap)."""
        return int(np.dot(np.asarray(x, dtype=np.int64), self.strides))


def state_strides(caps: np.ndarray) -> np.ndarray:
    """The strides of the flattened state (C order) over job counts ``0..caps[k]``: the flat
    index of ``x`` is ``x . strides``."""
    strides = np.ones(len(caps), dtype=np.int64)
    for k in range(len(caps) - 2, -1, -1):
        strides[k] = strides[k + 1] * (int(caps[k + 1]) + 1)
    return strides


def chain_model(
    net: NetworkSpec, caps: Sequence[int] | int, loss_cost: Sequence[float] | float = 0.0
) -> ChainModel:
    """``net`` as a :class:`ChainModel` truncated at ``caps`` (one cap per class, or one for
    all), charging ``loss_cost`` (per class, or one for all; cost units, a holding cost times
    seconds) for every arrival lost at a full class; SpecError naming what disqualifies the
    network, the caps or the loss cost."""
    topo = net.topology
    K = topo.n_classes
    stations = list(net.engines)
    for name, eng in net.engines.items():
        if eng.kind != "station":
            raise SpecError(
                f"engines.{name}",
                "is an LLM engine: the optimal-control solver needs stations",
                "use a network of stations (such as criss-cross or lu-kumar)",
            )
        if eng.servers != 1 or eng.discipline != "preemptive-resume":
            raise SpecError(
                f"engines.{name}",
                f"has {eng.servers} server(s), {eng.discipline}",
                "the solver handles one-server preemptive-resume stations",
            )
    for wf in net.workflows:
        if wf.arrival.kind != "poisson":
            raise SpecError(
                f"workflows.{wf.name}.arrival",
                f"is {wf.arrival.kind}",
                "the solver needs Poisson arrivals",
            )
    mu = np.zeros(K)
    station = np.zeros(K, dtype=np.int64)
    for k, name in enumerate(topo.classes):
        spec = net.classes[name]
        if spec.service is None or spec.service.kind != "exponential":
            kind = "none" if spec.service is None else spec.service.kind
            raise SpecError(
                f"classes.{name}.service", f"is {kind}", "the solver needs exponential service"
            )
        if len(topo.eligible[k]) != 1:
            raise SpecError(
                f"classes.{name}.engines",
                "names several stations",
                "the solver needs one station per class",
            )
        mu[k] = 1.0 / float(spec.service.mean)
        station[k] = topo.eligible[k][0]
    rows: list[list[tuple[int, float]]] = []
    exit_prob = np.zeros(K)
    for k, step in enumerate(topo.steps):
        if step.kind not in ("exit", "next", "random"):
            raise SpecError(
                f"classes.{topo.classes[k]}",
                f"is followed by a {step.kind}",
                "the solver handles next classes, exits and random routing, not forks or joins",
            )
        probs = step.probs or (1.0,) * len(step.targets)
        row: list[tuple[int, float]] = []
        for t, p in zip(step.targets, probs, strict=True):
            if t == EXIT:
                exit_prob[k] += p
            else:
                row.append((int(t), float(p)))
        rows.append(row)
    given = caps if isinstance(caps, int) else list(caps)
    if isinstance(caps, int):
        caps = [caps] * K
    caps_arr = np.asarray(list(caps), dtype=np.int64)
    if caps_arr.shape != (K,) or (caps_arr < 1).any():
        raise SpecError(
            "--caps",
            f"{given} is not a whole number >= 1 or {K} of them",
            f"give one cap per class ({', '.join(topo.classes)}) or one for all",
        )
    n_states = int(np.prod(caps_arr.astype(float) + 1))
    if n_states > MAX_STATES:
        raise SpecError(
            "--caps",
            f"{n_states:,} states exceed the limit of {MAX_STATES:,}",
            "give smaller caps",
        )
    try:
        loss_arr = np.asarray(loss_cost, dtype=float)
    except (TypeError, ValueError):
        loss_arr = np.full(K, np.nan)
    if loss_arr.ndim == 0:
        loss_arr = np.full(K, float(loss_arr))
    if loss_arr.shape != (K,) or not np.isfinite(loss_arr).all() or (loss_arr < 0).any():
        raise SpecError(
            "--loss-cost",
            f"{loss_cost} is not a number >= 0 or {K} of them",
            f"give one cost per class ({', '.join(topo.classes)}) or one for all, such as 200",
        )
    strides = state_strides(caps_arr)
    r_ptr = np.zeros(K + 1, dtype=np.int64)
    for k, row in enumerate(rows):
        r_ptr[k + 1] = r_ptr[k] + len(row)
    r_tgt = np.array([t for row in rows for t, _ in row] or [0], dtype=np.int64)
    r_prob = np.array([p for row in rows for _, p in row] or [0.0], dtype=np.float64)
    M = np.zeros(len(stations))
    for k in range(K):
        M[station[k]] = max(M[station[k]], mu[k])
    alpha = np.asarray(topo.alpha, dtype=float)
    return ChainModel(
        classes=tuple(topo.classes),
        stations=tuple(stations),
        caps=caps_arr,
        strides=strides,
        h=np.asarray(topo.holding_cost, dtype=float),
        alpha=alpha,
        mu=mu,
        station=station,
        exit_prob=exit_prob,
        r_ptr=r_ptr,
        r_tgt=r_tgt,
        r_prob=r_prob,
        M=M,
        Lambda=float(alpha.sum() + M.sum()),
        loss_cost=loss_arr,
    )


@dataclass
class Solution:
    """What :func:`solve` or :func:`evaluate` found.

    ``cost``: the average holding cost per second (the midpoint of ``[lower, upper]``, the
    bounds after the last sweep); ``iterations`` (sweeps), ``converged`` (the interval met the
    tolerance), ``seconds`` (wall time); ``actions``: per state and station the class served
    (``-1``: idle), shape ``(states, stations)``; ``values``: the relative value function
    (``V(0) = 0``, cost units per ``Lambda`` event); ``policy``: ``optimal`` or the priority
    evaluated.
    """

    model: ChainModel
    policy: str
    lower: float
    upper: float
    iterations: int
    converged: bool
    seconds: float
    values: np.ndarray = field(repr=False)
    actions: np.ndarray = field(repr=False)

    @property
    def cost(self) -> float:
        return 0.5 * (self.lower + self.upper)

    def action(self, x: Sequence[int]) -> tuple[int, ...]:
        """The class each station serves in state ``x`` (``-1``: idle)."""
        return tuple(int(a) for a in self.actions[self.model.state_index(x)])


@functools.cache
def _kernel() -> Callable[..., tuple[float, float]]:
    """The compiled sweeps (built on first use; numba caches the machine code on disk)."""
    from numba import njit, prange

    @njit(cache=True, inline="always")
    def sweep_range(
        V: np.ndarray,
        TV: np.ndarray,
        act: np.ndarray,
        first: int,
        stop: int,
        caps: np.ndarray,
        strides: np.ndarray,
        h: np.ndarray,
        alpha: np.ndarray,
        mu: np.ndarray,
        station: np.ndarray,
        exit_prob: np.ndarray,
        r_ptr: np.ndarray,
        r_tgt: np.ndarray,
        r_prob: np.ndarray,
        M: np.ndarray,
        lam: float,
        rank: np.ndarray,
        fixed: np.ndarray,
        loss: np.ndarray,
    ) -> tuple[float, float]:
        """``T V`` and the actions on the states ``first .. stop - 1`` (into ``TV`` and
        ``act``; ``rank`` and ``fixed`` as in ``sweeps``); returns the least and the largest
        ``(T V - V)(s)`` there."""
        K = caps.shape[0]
        J = M.shape[0]
        optimize = rank[0] == -1
        table = rank[0] == -2
        best = np.zeros(J)
        best_k = np.zeros(J, dtype=np.int64)
        best_r = np.zeros(J, dtype=np.int64)
        x = np.zeros(K, dtype=np.int64)
        rest = first
        for k in range(K - 1, -1, -1):  # the counts of the first state
            x[k] = rest % (caps[k] + 1)
            rest //= caps[k] + 1
        lo, hi = np.inf, -np.inf
        for s in range(first, stop):
            v = V[s]
            total = 0.0
            for k in range(K):
                total += h[k] * x[k]
                if alpha[k] > 0.0:
                    if x[k] < caps[k]:
                        total += alpha[k] * V[s + strides[k]]
                    else:
                        total += alpha[k] * (v + loss[k])
            for j in range(J):
                best[j] = 0.0
                best_k[j] = -1
                best_r[j] = 1 << 60
            for k in range(K):
                if x[k] == 0:
                    continue
                down = s - strides[k]
                e = exit_prob[k] * V[down]
                for r in range(r_ptr[k], r_ptr[k + 1]):
                    t = r_tgt[r]
                    if t == k:
                        e += r_prob[r] * v
                    elif x[t] < caps[t]:
                        e += r_prob[r] * V[down + strides[t]]
                    else:
                        e += r_prob[r] * v  # blocked: the job stays
                q = mu[k] * (e - v)
                j = station[k]
                if table:
                    if fixed[s, j] == k:
                        best[j] = q
                        best_k[j] = k
                elif optimize:
                    if best_k[j] < 0 or q < best[j]:
                        best[j] = q
                        best_k[j] = k
                elif rank[k] < best_r[j]:
                    best_r[j] = rank[k]
                    best[j] = q
                    best_k[j] = k
            for j in range(J):
                total += M[j] * v + best[j]
                act[s, j] = best_k[j]
            tv = total / lam
            TV[s] = tv
            d = tv - v
            if d < lo:
                lo = d
            if d > hi:
                hi = d
            # next state, C order
            k = K - 1
            while k >= 0:
                x[k] += 1
                if x[k] <= caps[k]:
                    break
                x[k] = 0
                k -= 1
        return lo, hi

    @njit(cache=True)
    def shift(V: np.ndarray, TV: np.ndarray, first: int, stop: int) -> None:
        """``V = TV - TV[0]`` on the states ``first .. stop - 1``."""
        base = TV[0]
        for s in range(first, stop):
            V[s] = TV[s] - base

    @njit(cache=True)
    def serial(
        V, TV, act, n, chunks, caps, strides, h, alpha, mu, station, exit_prob, r_ptr, r_tgt,
        r_prob, M, lam, rank, fixed, loss,
    ):  # arguments as sweep_range  # fmt: skip
        """``n`` sweeps over all states in one range (``chunks`` is ignored)."""
        S = V.shape[0]
        lo, hi = 0.0, 0.0
        for _ in range(n):
            lo, hi = sweep_range(
                V, TV, act, 0, S, caps, strides, h, alpha, mu, station, exit_prob, r_ptr,
                r_tgt, r_prob, M, lam, rank, fixed, loss,
            )  # fmt: skip
            shift(V, TV, 0, S)
        return lo, hi

    @njit(cache=True, parallel=True)
    def parallel(
        V, TV, act, n, chunks, caps, strides, h, alpha, mu, station, exit_prob, r_ptr, r_tgt,
        r_prob, M, lam, rank, fixed, loss,
    ):  # arguments as sweep_range  # fmt: skip
        """``n`` sweeps, the states split into ``chunks`` ranges swept in parallel."""
        S = V.shape[0]
        los = np.empty(chunks)
        his = np.empty(chunks)
        lo, hi = 0.0, 0.0
        for _ in range(n):
            for c in prange(chunks):
                bounds = sweep_range(
                    V, TV, act, c * S // chunks, (c + 1) * S // chunks, caps, strides, h,
                    alpha, mu, station, exit_prob, r_ptr, r_tgt, r_prob, M, lam, rank, fixed,
                    loss,
                )  # fmt: skip
                los[c] = bounds[0]
                his[c] = bounds[1]
            lo, hi = los.min(), his.max()
            for c in prange(chunks):
                shift(V, TV, c * S // chunks, (c + 1) * S // chunks)
        return lo, hi

    def sweeps(
        V: np.ndarray, TV: np.ndarray, act: np.ndarray, n: int, chunks: int, *model: Any
    ) -> tuple[float, float]:
        """``n`` sweeps of relative value iteration (``rank[0] == -1``: optimize; ``-2``:
        serve ``fixed[s, j]`` at station ``j`` in state ``s``, ``-1`` idling; else serve the
        non-empty class of smallest rank); V holds the result; returns the bounds of
        ``T V - V`` (per event) of the last sweep. ``model``: the rest of
        :func:`kernel_args`. With ``chunks > 1`` the states are split into that many ranges
        swept in parallel: each state's new value reads only the old ``V``, so the result is
        the same bit for bit."""
        run = serial if chunks == 1 else parallel
        return run(V, TV, act, n, chunks, *model)  # type: ignore[no-any-return]

    return sweeps


def bellman_reference(
    model: ChainModel,
    V: np.ndarray,
    rank: Sequence[int] | None = None,
    fixed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``T V`` and the actions (per state and station) in numpy: the reference for the
    compiled sweeps (``rank``: a priority's rank per class; ``fixed``: an action table as in
    :func:`evaluate_table`; neither: optimize)."""
    caps = tuple(int(c) for c in model.caps)
    K, J = len(caps), len(model.M)
    Vg = V.reshape(tuple(c + 1 for c in caps))
    grid = np.indices(Vg.shape)
    total = np.tensordot(model.h, grid, axes=1).astype(float)
    for k in range(K):
        if model.alpha[k] > 0:
            up = np.roll(Vg, -1, axis=k)
            full = grid[k] == caps[k]
            total += model.alpha[k] * np.where(full, Vg + model.loss_cost[k], up)
    best = np.zeros((J, *Vg.shape))
    best_k = np.full((J, *Vg.shape), -1, dtype=np.int64)
    best_r = np.full((J, *Vg.shape), 1 << 60, dtype=np.int64)
    for k in range(K):
        busy = grid[k] > 0
        down = np.roll(Vg, 1, axis=k)  # V(x - e_k) where x_k > 0
        e = model.exit_prob[k] * down
        for r in range(model.r_ptr[k], model.r_ptr[k + 1]):
            t, p = int(model.r_tgt[r]), float(model.r_prob[r])
            if t == k:
                e = e + p * Vg
                continue
            moved = np.roll(down, -1, axis=t)
            e = e + p * np.where(grid[t] < caps[t], moved, Vg)
        q = model.mu[k] * (e - Vg)
        j = int(model.station[k])
        if fixed is not None:
            better = fixed[:, j].reshape(Vg.shape) == k
        elif rank is None:
            better = busy & ((best_k[j] < 0) | (q < best[j]))
        else:
            better = busy & (rank[k] < best_r[j])
            best_r[j] = np.where(better, rank[k], best_r[j])
        best[j] = np.where(better, q, best[j])
        best_k[j] = np.where(better, k, best_k[j])
    for j in range(J):
        total += model.M[j] * Vg + best[j]
    TV = (total / model.Lambda).ravel()
    actions = best_k.reshape(J, -1).T.copy()
    return TV, actions


STALL_SWEEPS = 8192
"""The iteration gives up when the bounds' interval has not narrowed by 10% over this many
sweeps (the policy's truncated chain has no single average cost: for instance an unstable
priority pinned at the caps)."""


def kernel_args(
    model: ChainModel, rank: np.ndarray, fixed: np.ndarray, chunks: int = 1
) -> tuple[object, ...]:
    """The arguments of the compiled sweeps after ``(V, TV, act, n)``: the ranges of states
    swept in parallel, the model's arrays, then ``rank`` and ``fixed`` (see :func:`_kernel`),
    then the cost per lost arrival."""
    m = model
    return (
        chunks, m.caps, m.strides, m.h, m.alpha, m.mu, m.station, m.exit_prob, m.r_ptr,
        m.r_tgt, m.r_prob, m.M, m.Lambda, rank, fixed, m.loss_cost,
    )  # fmt: skip


def max_threads() -> int:
    """The most threads the compiled sweeps may use (numba's thread pool: the machine's
    cores unless ``NUMBA_NUM_THREADS`` says otherwise)."""
    from numba import config

    return int(config.NUMBA_NUM_THREADS)


@contextlib.contextmanager
def _numba_threads(threads: int) -> Iterator[None]:
    """Run the block with numba's parallel loops on ``threads`` threads, then restore."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _iterate(
    model: ChainModel,
    rank: np.ndarray,
    policy: str,
    tol: float,
    max_sweeps: int,
    progress: Callable[[int], None] | None,
    fixed: np.ndarray | None = None,
    threads: int = 1,
    chunk: int = 64,
) -> Solution:
    sweeps = _kernel()
    S, J = model.n_states, len(model.M)
    if fixed is None:
        fixed = np.zeros((1, J), dtype=np.int64)
    V = np.zeros(S)
    TV = np.zeros(S)
    act = np.full((S, J), -1, dtype=np.int64)
    started = time.perf_counter()
    done = 0
    lo = hi = 0.0
    converged = False
    widths: list[float] = []  # the interval's width after each chunk
    back = STALL_SWEEPS // chunk
    args = kernel_args(model, rank, fixed, threads)
    while done < max_sweeps:
        n = min(chunk, max_sweeps - done)
        with _numba_threads(threads) if threads > 1 else contextlib.nullcontext():
            lo, hi = sweeps(V, TV, act, n, *args)
        done += n
        if progress is not None:
            progress(done)
        lower, upper = lo * model.Lambda, hi * model.Lambda
        if upper - lower <= tol * max(abs(lower), 1e-12):
            converged = True
            break
        widths.append(upper - lower)
        if len(widths) > back and widths[-1] > 0.9 * widths[-1 - back]:
            break  # stalled
    return Solution(
        model=model,
        policy=policy,
        lower=lo * model.Lambda,
        upper=hi * model.Lambda,
        iterations=done,
        converged=converged,
        seconds=time.perf_counter() - started,
        values=V,
        actions=act,
    )


def solve(
    net: NetworkSpec | ChainModel,
    caps: Sequence[int] | int = 30,
    *,
    tol: float = 1e-4,
    max_sweeps: int = 200_000,
    progress: Callable[[int], None] | None = None,
    threads: int = 1,
) -> Solution:
    """The optimal average cost per second (holding cost, plus the model's charges for lost
    arrivals; among work-conserving policies) of ``net`` truncated at ``caps``, with bounds
    and the optimal action per state; ``tol``: relative width of the bounds' interval at
    which to stop (``converged``); the iteration also stops after ``max_sweeps`` sweeps, or
    when the interval stalls; ``progress(sweeps)`` is called now and then."""
    model = net if isinstance(net, ChainModel) else chain_model(net, caps)
    _check_run_args(tol, max_sweeps, threads)
    rank = np.full(len(model.classes), -1, dtype=np.int64)
    return _iterate(model, rank, "optimal", tol, max_sweeps, progress, threads=threads)


def evaluate(
    net: NetworkSpec | ChainModel,
    order: Sequence[str],
    caps: Sequence[int] | int = 30,
    *,
    tol: float = 1e-4,
    max_sweeps: int = 200_000,
    progress: Callable[[int], None] | None = None,
    threads: int = 1,
) -> Solution:
    """The average holding cost per second of the static priority ``order`` (class names,
    highest first; classes left out follow in index order), as :func:`solve` computes it."""
    model = net if isinstance(net, ChainModel) else chain_model(net, caps)
    _check_run_args(tol, max_sweeps, threads)
    names = list(model.classes)
    unknown = [c for c in order if c not in names]
    if unknown:
        raise SpecError(
            "priority", f"unknown class {unknown[0]!r}", f"use classes {', '.join(names)}"
        )
    ranked = [names.index(c) for c in order] + [
        k for k in range(len(names)) if names[k] not in order
    ]
    rank = np.empty(len(names), dtype=np.int64)
    for r, k in enumerate(ranked):
        rank[k] = r
    spec = "priority:" + ">".join(names[k] for k in ranked)
    return _iterate(model, rank, spec, tol, max_sweeps, progress, threads=threads)


def evaluate_table(
    net: NetworkSpec | ChainModel,
    table: np.ndarray,
    name: str,
    caps: Sequence[int] | int = 30,
    *,
    tol: float = 1e-4,
    max_sweeps: int = 200_000,
    progress: Callable[[int], None] | None = None,
    threads: int = 1,
) -> Solution:
    """The average holding cost per second of the stationary policy ``table`` (per flat state
    and station: the class served, ``-1`` idle; shape ``(states, stations)``), as
    :func:`solve` computes it; ``name`` labels the solution. SpecError for a table that
    serves an empty class or a class of another station."""
    model = net if isinstance(net, ChainModel) else chain_model(net, caps)
    _check_run_args(tol, max_sweeps, threads)
    S, J, K = model.n_states, len(model.stations), len(model.classes)
    table = np.asarray(table)
    if table.shape != (S, J):
        raise SpecError("table", f"has shape {table.shape}, not ({S}, {J})", "")
    grid = model.counts()
    for j in range(J):
        a = table[:, j]
        served = a >= 0
        ok = np.ones(S, dtype=bool)
        ok[served] = model.station[a[served]] == j
        ok[served] &= grid[a[served], np.flatnonzero(served)] > 0
        if not ok.all() or (a < -1).any() or (a >= K).any():
            s = int(np.flatnonzero(~ok)[0]) if not ok.all() else 0
            raise SpecError(
                "table",
                f"serves class {int(a[s])} at station {model.stations[j]} in state "
                f"{tuple(int(v) for v in grid[:, s])}",
                "serve a class of the station that has a job, or -1",
            )
    rank = np.full(K, -2, dtype=np.int64)
    fixed = table.astype(np.int64)
    return _iterate(model, rank, name, tol, max_sweeps, progress, fixed, threads)


def priority_orders(model: ChainModel) -> list[list[str]]:
    """Every static priority that differs at some station: the product over stations of the
    orders of its classes (as full class orders, station by station)."""
    per_station = [
        [model.classes[k] for k in range(len(model.classes)) if model.station[k] == j]
        for j in range(len(model.stations))
    ]
    orders = [list(itertools.permutations(cls)) for cls in per_station]
    return [[c for part in combo for c in part] for combo in itertools.product(*orders)]


def stationary(sol: Solution, tol: float = 1e-10, max_sweeps: int = 50_000) -> np.ndarray:
    """The stationary distribution (over flat states) of the chain ``sol``'s actions drive,
    by power iteration of the uniformized chain from the empty state until the L1 change is
    below ``tol``, or the last iterate after ``max_sweeps`` (a chain pinned at the caps mixes
    slowly: its mass is then already at the caps)."""
    m = sol.model
    P = transition_matrix(sol)
    pi = np.zeros(m.n_states)
    pi[0] = 1.0
    PT = P.T.tocsr()
    for _ in range(max_sweeps):
        nxt = PT @ pi
        if np.abs(nxt - pi).sum() < tol:
            return nxt
        pi = nxt
    return pi


def transition_matrix(sol: Solution) -> sparse.csr_matrix:
    """The uniformized chain (one step per ``Lambda`` event) under ``sol``'s actions, as a
    sparse row-stochastic matrix over flat states."""
    m = sol.model
    S, K = m.n_states, len(m.classes)
    grid = m.counts()
    s = np.arange(S)
    rows, cols, vals = [], [], []
    stay = np.full(S, m.Lambda)
    for k in range(K):
        if m.alpha[k] > 0:
            ok = grid[k] < m.caps[k]
            rows.append(s[ok])
            cols.append(s[ok] + m.strides[k])
            vals.append(np.full(ok.sum(), m.alpha[k]))
            stay[ok] -= m.alpha[k]
    for j in range(len(m.stations)):
        served = sol.actions[:, j]
        for k in np.flatnonzero(m.station == j):
            on = served == k
            src = s[on]
            down = src - m.strides[k]
            if m.exit_prob[k] > 0:
                rows.append(src)
                cols.append(down)
                vals.append(np.full(src.size, m.mu[k] * m.exit_prob[k]))
                stay[on] -= m.mu[k] * m.exit_prob[k]
            for r in range(m.r_ptr[k], m.r_ptr[k + 1]):
                t, p = int(m.r_tgt[r]), float(m.r_prob[r])
                if t == k:
                    continue
                ok = grid[t][on] < m.caps[t]
                rows.append(src[ok])
                cols.append(down[ok] + m.strides[t])
                vals.append(np.full(ok.sum(), m.mu[k] * p))
                stay[src[ok]] -= m.mu[k] * p
    rows.append(s)
    cols.append(s)
    vals.append(stay)
    P = sparse.csr_matrix(
        (np.concatenate(vals) / m.Lambda, (np.concatenate(rows), np.concatenate(cols))),
        shape=(S, S),
    )
    return P


def at_cap(model: ChainModel, pi: np.ndarray) -> float:
    """The stationary probability that some class sits at its cap."""
    grid = model.counts()
    full = (grid == model.caps[:, None]).any(axis=0)
    return float(pi[full].sum())


def mean_cost(model: ChainModel, pi: np.ndarray) -> float:
    """The average cost per second under the stationary distribution ``pi``: the holding cost,
    plus the model's ``loss_cost`` of the arrivals lost at full classes (if any)."""
    grid = model.counts()
    cost = float(pi @ (model.h @ grid))
    for k in np.flatnonzero(model.loss_cost * model.alpha > 0):
        cost += float(model.alpha[k] * model.loss_cost[k] * pi[grid[k] == model.caps[k]].sum())
    return cost


def _check_run_args(tol: float, max_sweeps: int, threads: int = 1) -> None:
    if not (math.isfinite(tol) and tol > 0):
        raise SpecError("--tol", f"{tol!r} is not > 0", "give a relative tolerance such as 1e-4")
    if max_sweeps < 1:
        raise SpecError("--max-sweeps", f"{max_sweeps} is not >= 1", "give a whole number >= 1")
    if not (isinstance(threads, int) and 1 <= threads <= max_threads()):
        raise SpecError(
            "--threads",
            f"{threads!r} is not a whole number from 1 to {max_threads()}",
            f"give at most the {max_threads()} threads numba may use here",
        )


__all__ = [
    "MAX_STATES",
    "ChainModel",
    "Solution",
    "at_cap",
    "bellman_reference",
    "chain_model",
    "evaluate",
    "evaluate_table",
    "max_threads",
    "mean_cost",
    "priority_orders",
    "solve",
    "state_strides",
    "stationary",
    "transition_matrix",
]
