"""External mode in the compiled loop: the kernel runs between decisions, Python decides.

``NetworkSimulator(net, None, loop="compiled")`` keeps its state in the kernel's arrays
(:class:`~policyopt.sim.compiled_loop.LoopState`) for the whole run. :meth:`CompiledExternal.
advance` resumes the kernel until an engine must decide (the kernel stops with
``STOP_DECIDE``) or the horizon; :meth:`CompiledExternal.decide` writes the order the kernel
applies when it resumes. Between the two, the queries of the simulator (what a policy's
:class:`~policyopt.policies.NetworkView` and the environment read) are answered from the
arrays by the methods below, with the same arithmetic as the Python loop's, so the numbers are
the same bit for bit (``tests/test_compiled_external.py`` drives both loops side by side).

The arrays travel as one :class:`~policyopt.sim.kernel_state.KernelState`: resuming costs one
cheap call, not a hundred argument checks. At the horizon the state is written back into the
simulator's objects, as after a run in policy mode.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from policyopt.sim.compiled_loop import LoopState, finish_compiled, serve_stop

if TYPE_CHECKING:
    from policyopt.sim.network_sim import NetworkSimulator


class CompiledExternal:
    """The compiled loop of an external-mode simulator (made at its first ``advance``)."""

    def __init__(
        self,
        sim: NetworkSimulator,
        block: int,
        fold: int,
        watch: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        """``watch``: ``(scale, weights)`` of the observation the kernel computes at each
        decision (:meth:`NetworkSimulator.watch`), or ``None``."""
        from policyopt.sim import station_kernel as sk
        from policyopt.sim.kernel_state import pack

        self.sk, self._pack, self._resume = sk, pack, sk.resume
        self.sim = sim
        self.state = state = LoopState(sim, block, fold)
        # the view reads the simulator's job counts: the kernel counts in that very buffer
        sim.jobs[:] = state.jobs
        state.jobs = sim.jobs
        self.iv, self.fv = state.iv, state.fv
        self.llm = [e.llm for e in sim.engines]
        self.classes = [list(e.classes) for e in sim.engines]
        self.class_sets = [set(e.classes) for e in sim.engines]
        K, J = sim.topo.n_classes, len(sim.engines)
        scale, weights = watch if watch is not None else ([], [0.0] * K)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.weights = np.asarray(weights, dtype=np.float64)
        C = sum(1 for e in sim.engines if e.mem is not None)  # (limited KV caches)
        self.obs = np.zeros(3 * K + J + C if watch is not None else 0, dtype=np.float32)
        self.out = np.zeros(7)  # (see station_kernel.resume)
        self.packed = pack(state, 0, self.scale, self.weights, self.obs, self.out)
        self._decide_code, self._end_code = sk.STOP_DECIDE, sk.STOP_END
        self._skip = -1  # iv[I_SKIP] as last written

    def __deepcopy__(self, memo: dict[int, Any]) -> CompiledExternal:
        """A copy running on its own arrays (a copied simulator's, through ``memo``)."""
        new = CompiledExternal.__new__(CompiledExternal)
        memo[id(self)] = new
        shared = ("sk", "_pack", "_resume", "packed", "iv", "fv")
        for name, value in self.__dict__.items():
            if name not in shared:
                setattr(new, name, copy.deepcopy(value, memo))
        new.sk, new._pack, new._resume = self.sk, self._pack, self._resume
        new.iv, new.fv = new.state.iv, new.state.fv  # (shared buffers stay shared: memo)
        new.packed = new._pack(new.state, 0, new.scale, new.weights, new.obs, new.out)
        return new

    # ------------------------------------------------------------------ run
    def advance(self, skip_trivial: bool) -> int | None:
        """Resume the kernel until an engine must decide (its index) or the horizon
        (``None``: the state is then written back into the simulator)."""
        iv = self.iv
        if skip_trivial != self._skip:
            self._skip = iv[self.sk.I_SKIP] = int(skip_trivial)
        resume, packed = self._resume, self.packed
        while True:
            code = resume(packed)
            if code == self._decide_code:
                values = self.out.tolist()  # (one read: faster than two numpy scalars)
                self.sim.now = values[5]
                return int(values[6])
            if code == self._end_code:
                finish_compiled(self.state, self.sim)
                return None
            if serve_stop(self.state, self.sim, code):
                extras = (self.scale, self.weights, self.obs, self.out)
                packed = self.packed = self._pack(self.state, 0, *extras)

    def decide(
        self,
        j: int,
        order: Sequence[int],
        decode_cap: int | None = None,
        token_cap: int | None = None,
    ) -> None:
        """Engine ``j`` (the one asked) serves its classes in ``order`` (every class of ``j``,
        once each), with ``decode_cap`` and ``token_cap`` at an LLM engine (as
        :meth:`NetworkSimulator.decide`), when the kernel resumes."""
        sk, state = self.sk, self.state
        n = len(order)
        if n != len(self.classes[j]) or set(order) != self.class_sets[j]:
            raise ValueError(
                f"order {list(order)}: in the compiled loop an order lists every class of the "
                f"engine once ({sorted(self.classes[j])}); to serve only some, use loop='python'"
            )
        state.e_order[j, :n] = order
        self._caps(j, decode_cap, token_cap)
        self.iv[sk.I_GIVEN] = 1

    def decide_first(
        self, j: int, k: int, decode_cap: int | None = None, token_cap: int | None = None
    ) -> None:
        """Engine ``j`` (the one asked) serves class ``k`` first, its other classes by maximum
        pressure (:meth:`~policyopt.policies.MaxPressure.order_after`), with the caps of
        :meth:`decide`, when the kernel resumes."""
        sk, iv = self.sk, self.iv
        if k not in self.class_sets[j]:
            raise ValueError(f"class {k}: engine {j} serves only {sorted(self.classes[j])}")
        if decode_cap is not None or token_cap is not None:
            self._caps(j, decode_cap, token_cap)
        iv[sk.I_FIRST] = k
        iv[sk.I_GIVEN] = 2

    def _caps(self, j: int, decode_cap: int | None, token_cap: int | None) -> None:
        """The next batch's caps at engine ``j`` (ignored at a station)."""
        if self.llm[j]:
            ek, li = self.state.ek, self.state.e_li
            li[j, ek.L_DCAP] = -1 if decode_cap is None else decode_cap
            li[j, ek.L_TCAP] = -1 if token_cap is None else token_cap

    # ------------------------------------------------------------------ queries
    def classes_with_work(self, j: int) -> list[int]:
        """As :meth:`NetworkSimulator.classes_with_work`."""
        q_len = self.state.q_len
        if self.llm[j]:
            d_len = self.state.d_len
            return [k for k in self.classes[j] if q_len[k] or d_len[k]]
        return [k for k in self.classes[j] if q_len[k]]

    def class_state_flat(self) -> list[float]:
        """As :meth:`NetworkSimulator.class_state_flat` (the kernel's ``class_state``, the one
        the observation is computed from)."""
        return self.sk.class_state(self.packed).tolist()  # type: ignore[no-any-return]

    def class_counts(self) -> tuple[list[float], list[float], list[float]]:
        """Per class: job-seconds up to its last change, jobs now, the time of that change
        (the simulator's ``_area``, ``_jobs``, ``_last``), as Python floats."""
        state = self.state
        return state.area.tolist(), state.jobs.tolist(), state.last.tolist()

    def fcfs_order(self, j: int) -> list[int]:
        """As :meth:`NetworkSimulator.fcfs_order`."""
        state = self.state
        q, q_head, q_len, j_arr = state.q, state.q_head, state.q_len, state.j_arr
        d, d_head, d_len = state.d, state.d_head, state.d_len
        llm = self.llm[j]

        def oldest(k: int) -> tuple[float, int]:
            t = float(j_arr[q[k, q_head[k] % q.shape[1]]]) if q_len[k] else float("inf")
            if llm and d_len[k]:
                t2 = float(j_arr[d[k, d_head[k] % d.shape[1]]])
                if t2 < t:
                    t = t2
            return t, k

        return sorted(self.classes[j], key=oldest)

    def memory_free(self) -> list[float]:
        """As :meth:`NetworkSimulator.memory_free`."""
        ek, li = self.state.ek, self.state.e_li
        return [
            int(li[e.index, ek.L_FREE]) / int(li[e.index, ek.L_TOTAL])
            for e in self.sim.engines
            if e.mem is not None
        ]

    def engine_jobs(self, j: int) -> tuple[int, int]:
        """As :meth:`NetworkSimulator.engine_jobs`."""
        state = self.state
        if self.llm[j]:
            ek = self.state.ek
            return int(state.e_li[j, ek.L_NWAIT]), int(state.e_li[j, ek.L_NDEC])
        return sum(int(state.q_len[k]) for k in self.classes[j]), 0
