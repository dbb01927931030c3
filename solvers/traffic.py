"""Traffic equations, engine capacities and nominal loads of a network (``docs/networks.md``).

With ``alpha`` the exogenous arrival rates (requests/s into each workflow's entry class) and
``P`` the routing matrix (``P[k, l]`` = expected jobs sent to class ``l`` when a job of class
``k`` completes; a fork sends one job to each branch, and a branch that reaches ``join``
sends ``1/n`` of a job to the join class of an ``n``-branch fork, so the join class receives one
job per fork), the class rates solve

    lambda = alpha + P^T lambda,   i.e.   lambda = (I - P^T)^{-1} alpha        (jobs/s)

which has a finite nonnegative solution for every ``alpha`` exactly when the spectral radius
of ``P`` is below one (the network spec refuses any other routing).

Capacity ``mu_j`` of an engine (:func:`policyopt.solvers.capacity.llm_capacity`): an LLM
engine's token capacity ``max_{n <= b} n / t(n)`` tokens/s (Theorem 2 of Li, Dai, Peng, arXiv
2504.07347), with the batch time evaluated at the engine's nominal prefill share (this matters
only for the ``affine`` model); with ``max_seqs`` the capacity along the engine's nominal
prefill/decode mix from the batch-size region LP (:mod:`policyopt.solvers.batch_size_region`).
A station's capacity is its number of servers (``servers`` seconds of work per second; 1 by
default).

Nominal load of engine ``j``: ``sum_k lambda_k w_k s_kj / mu_j`` with ``w_k`` the mean work of
class ``k`` (tokens or seconds) and ``s_kj`` the share of class ``k`` sent to engine ``j``:
1 for a fixed engine; for an eligible set, shares proportional to the engines' capacities (what
join-shortest-queue does between identical engines). The static planning LP
(:mod:`policyopt.solvers.static_planning`) finds the best split instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from policyopt.model.network import LLMEngine, NetworkSpec, Topology
from policyopt.model.network import spectral_radius as _spectral_radius
from policyopt.solvers.capacity import llm_capacity


def routing_matrix(net: NetworkSpec | Topology) -> sparse.csr_matrix:
    """``P`` (classes x classes): expected jobs sent to class ``l`` per completion of ``k``."""
    topo = net.topology if isinstance(net, NetworkSpec) else net
    return topo.routing_matrix()


def spectral_radius(matrix: sparse.spmatrix | np.ndarray) -> float:
    """Spectral radius of a nonnegative routing matrix (largest over strong components)."""
    return _spectral_radius(matrix)[0]


def class_rates(net: NetworkSpec | Topology, alpha: np.ndarray | None = None) -> np.ndarray:
    """``lambda = (I - P^T)^{-1} alpha``: per-class rates (jobs/s), fork multiplicities included.

    ``alpha`` (per class, requests/s) defaults to the network's exogenous rates.
    """
    topo = net.topology if isinstance(net, NetworkSpec) else net
    a = np.asarray(topo.alpha if alpha is None else alpha, dtype=float)
    n = topo.n_classes
    mat = sparse.identity(n, format="csc") - topo.routing_matrix().T.tocsc()
    lam = spsolve(mat, a) if n > 1 else a / mat.toarray()[0, 0]
    lam = np.atleast_1d(np.asarray(lam, dtype=float))
    lam[np.abs(lam) < 1e-15] = 0.0
    return lam


def prefill_shares(topo: Topology, rates: np.ndarray, split: np.ndarray) -> np.ndarray:
    """Per engine, prefill tokens / all tokens of the work routed to it (0.5 if none)."""
    prompt = np.asarray(topo.mean_prompt)
    work = np.asarray(topo.work)
    tokens = (rates * work) @ split
    pre = (rates * prompt) @ split
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(tokens > 0, pre / np.where(tokens > 0, tokens, 1.0), 0.5)
    return np.clip(share, 0.0, 1.0)


def engine_capacity(engine: LLMEngine | object, prefill_share: float = 0.5) -> float:
    """``mu_j``: tokens/s of an LLM engine (see the module docstring), a station's servers
    (seconds of work per second)."""
    if not isinstance(engine, LLMEngine):
        return float(getattr(engine, "servers", 1))
    return llm_capacity(engine.engine_spec(), prefill_share)


def _even_split(topo: Topology, mu: np.ndarray) -> np.ndarray:
    """Shares ``s_kj``: 1 at a fixed engine, proportional to ``mu`` over an eligible set."""
    split = np.zeros((topo.n_classes, topo.n_engines))
    for k, elig in enumerate(topo.eligible):
        idx = np.asarray(elig)
        split[k, idx] = mu[idx] / mu[idx].sum()
    return split


@dataclass(frozen=True)
class Traffic:
    """Rates, work, capacities and nominal loads of a network.

    Arrays are indexed like ``classes`` and ``engines``: ``alpha`` and ``rates`` (jobs/s),
    ``work`` (``w_k``: mean tokens at an LLM engine, seconds at a station), ``offered`` =
    ``rates * work`` (tokens/s or seconds of work per second), ``mu`` (tokens/s or 1),
    ``split`` (classes x engines shares ``s_kj``), ``loads`` (nominal load per engine),
    ``prefill_share`` per engine, and the routing matrix's ``spectral_radius``.
    """

    classes: tuple[str, ...]
    engines: tuple[str, ...]
    engine_kind: tuple[str, ...]
    eligible: tuple[tuple[int, ...], ...]
    alpha: np.ndarray
    rates: np.ndarray
    work: np.ndarray
    offered: np.ndarray
    mu: np.ndarray
    split: np.ndarray
    loads: np.ndarray
    prefill_share: np.ndarray
    spectral_radius: float

    def rate(self, cls: str) -> float:
        """``lambda_k`` of class ``cls``, jobs/s."""
        return float(self.rates[self.classes.index(cls)])

    def load(self, engine: str) -> float:
        """Nominal load of ``engine``."""
        return float(self.loads[self.engines.index(engine)])

    def class_load(self, cls: str) -> float:
        """``rho_k = lambda_k w_k / mu_j`` of a class at its (single) engine."""
        k = self.classes.index(cls)
        return float(
            sum(self.offered[k] * self.split[k, j] / self.mu[j] for j in range(len(self.engines)))
        )

    def virtual_station_load(self, classes: list[str]) -> float:
        """Sum of the class loads ``rho_k`` of ``classes`` (e.g. the two long Rybko–Stolyar
        classes, which exit priority never serves at the same time)."""
        return float(sum(self.class_load(c) for c in classes))

    @property
    def max_load(self) -> float:
        """The largest nominal load (its inverse is the LP's ``theta*`` for fixed routing)."""
        return float(self.loads.max()) if len(self.loads) else 0.0

    def table(self) -> str:
        """A plain-text table of the per-engine and per-class quantities."""
        lines = [f"{'engine':<16}{'kind':<9}{'mu':>12}{'offered':>14}{'load':>9}"]
        offered_j = self.offered @ self.split
        for j, e in enumerate(self.engines):
            lines.append(
                f"{e:<16}{self.engine_kind[j]:<9}{self.mu[j]:>12.4g}{offered_j[j]:>14.4g}"
                f"{self.loads[j]:>9.4f}"
            )
        lines.append("")
        lines.append(f"{'class':<16}{'rate/s':>12}{'work':>12}{'engines':>20}")
        for k, c in enumerate(self.classes):
            eng = ",".join(self.engines[j] for j in self.eligible[k])
            lines.append(f"{c:<16}{self.rates[k]:>12.4g}{self.work[k]:>12.4g}{eng:>20}")
        return "\n".join(lines)


def traffic(net: NetworkSpec, alpha: np.ndarray | None = None) -> Traffic:
    """Solve the traffic equations of ``net`` and compute capacities and nominal loads.

    ``alpha`` (per class, requests/s) replaces the exogenous rates if given.
    """
    topo = net.topology
    rates = class_rates(topo, alpha)
    work = np.asarray(topo.work, dtype=float)
    engines = [net.engines[e] for e in topo.engines]
    # capacities: first at share 0.5 to split the eligible sets, then at the nominal mix
    mu0 = np.array([engine_capacity(e) for e in engines])
    split = _even_split(topo, mu0)
    share = prefill_shares(topo, rates, split)
    mu = np.array([engine_capacity(e, float(s)) for e, s in zip(engines, share, strict=True)])
    split = _even_split(topo, mu)
    offered = rates * work
    loads = (offered @ split) / mu
    return Traffic(
        classes=topo.classes,
        engines=topo.engines,
        engine_kind=topo.engine_kind,
        eligible=topo.eligible,
        alpha=np.asarray(topo.alpha if alpha is None else alpha, dtype=float),
        rates=rates,
        work=work,
        offered=offered,
        mu=mu,
        split=split,
        loads=loads,
        prefill_share=share,
        spectral_radius=spectral_radius(topo.routing_matrix()),
    )
