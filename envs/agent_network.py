"""Gymnasium environments over the network simulator (``docs/envs.md``).

:class:`AgentNetworkEnv` (``policyopt/AgentNetwork-v0``) lets an agent take the decisions of
:class:`~policyopt.sim.network_sim.NetworkSimulator` in external mode;
:class:`LLMEngineEnv` (``policyopt/LLMEngine-v0``) is the same environment on a one-engine
network with two classes. The spaces, reward and options are in the class docstrings and in
``docs/envs.md``. Actions are decoded by :class:`~policyopt.envs.actions.ActionDecoder`, and
observations built by :func:`observation` from the simulator's read-only
:class:`~policyopt.policies.NetworkView`; a trained agent running as a policy uses the same two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces

from policyopt.batch_cap import has_llm_engine
from policyopt.envs.actions import ACTION_MODES, ActionDecoder
from policyopt.model.config import build
from policyopt.model.network import NetworkSpec
from policyopt.model.networks_library import resolve_network
from policyopt.policies import NetworkView
from policyopt.sim.compiled_loop import LOOPS, numba_available, why_not
from policyopt.sim.network_sim import NetworkResult, NetworkSimulator
from policyopt.solvers.static_planning import static_plan

JOB_SCALE = 10.0
"""``c`` (jobs) in the observation's ``x / (x + c)`` for job counts: 10 jobs map to 0.5."""

WORK_SCALE = 10.0
"""Work of class ``k`` is scaled with ``c_k = WORK_SCALE * w_k`` (``w_k``: mean work of one job
of class ``k``, tokens or seconds), so ten jobs' worth of work maps to 0.5."""


def observation_scale(net: NetworkSpec) -> list[float]:
    """The ``c`` of ``x / (x + c)`` for the first ``3K`` observation entries of ``net``:
    ``JOB_SCALE`` jobs for the ``2K`` counts, ``WORK_SCALE * w_k`` (tokens or seconds) for the
    ``K`` remaining works."""
    topo = net.topology
    work_scale = [WORK_SCALE * max(float(w), 1e-12) for w in topo.work]
    return [JOB_SCALE] * (2 * topo.n_classes) + work_scale


def observation(view: NetworkView, engine: int | None, scale: Sequence[float]) -> np.ndarray:
    """The observation of :class:`AgentNetworkEnv` now, read from a simulator's ``view`` (see
    the class docstring).

    ``engine``: the deciding engine (``None``: none); ``scale``: :func:`observation_scale`.
    Shared with :class:`policyopt.learn.agent_policy.AgentPolicy`, which rebuilds it inside a
    policy-mode run from the view its policy receives. It holds no clock: the control problem
    is stationary (long-run average cost), so the same state gets the same action whatever the
    episode's horizon. Built from Python floats (a few dozen numbers; numpy's per-call overhead
    would dominate).
    """
    state = view.class_state_flat()
    values = [x / (x + c) if x > 0.0 else 0.0 for x, c in zip(state, scale, strict=True)]
    deciding = [0.0] * len(view.classes_at)
    if engine is not None:
        deciding[engine] = 1.0
    free = view.memory_free()  # engines with a limited KV cache: the share free
    # one conversion of one list: numpy's per-call overhead dominates at this size
    return np.array(values + deciding + free, dtype=np.float32)


class AgentNetworkEnv(gymnasium.Env[np.ndarray, np.int64]):
    """Schedule a network of LLM engines (or stations): which class fills a batch first.

    The network (``network``: a library name such as ``rybko-stolyar``, a YAML/TOML network
    file, or a :class:`~policyopt.model.network.NetworkSpec`) runs in the event-driven network
    simulator. One step is one **decision epoch** of one engine with at least two classes: an
    LLM engine whose batch just ended (or that was idle when work arrived), or a station at an
    arrival or completion. With ``K`` classes and ``J`` engines:

    **Action space** ``Discrete(K)`` (``action="order"``, the default): the class served first
    at the deciding engine. The other classes of that engine follow in maximum-pressure order,
    and the engine's batching rules fill its token budget in that order, so every batch is
    work-conserving by construction (at a station: the first class in the order with a
    waiting job is served).

    ``action="split"`` (LLM engines whose scheduler mixes prefill and decode: Sarathi-Serve,
    Orca): ``Discrete(K * L)`` with ``L = split_levels`` (default 5); action ``a = k * L + l``
    puts class ``k`` first and splits the token budget ``b`` at level ``l``: decode tokens
    first, up to ``round(l / (L - 1) * b)`` (one per decoding job, classes in order), then
    prefill fills the budget, then decoding fills what prefill left, so the batch is still
    work-conserving. Level ``L - 1`` is decode first (Sarathi-Serve's rule), level 0 prefill
    first; :meth:`native_level` is the engine's own rule and :meth:`encode_action` builds an
    action. The level is ignored at stations and at engines that do not mix. An epoch is then
    also a step when one class has work but the engine holds both decoding and waiting jobs
    (the split can change the batch).

    ``action="cap"`` (networks with an LLM engine): ``Discrete(K * L)`` with ``L`` the caps of
    :func:`~policyopt.batch_cap.cap_levels` (the token counts that end a step of the batch-time
    profile, at most 8, the budget last: 128, 256, 384, 512 for the default engine); action
    ``a = k * L + l`` puts class ``k`` first and caps the batch at the ``l``-th of them (a
    ``batch-cap`` policy's batch; a capped batch that could be larger is not
    work-conserving). Level ``L - 1`` is the full budget (the native level). The level is
    ignored at stations. An epoch is then also a step when one class has work and the engine
    has prompts waiting or more decoding jobs than the smallest cap.

    :meth:`action_masks` marks the legal actions: the classes served at the deciding engine
    that have work there (waiting, prefilling or decoding; at a station, waiting or in
    service); if none has work, all of the engine's classes; if no engine decides (the episode
    ended before any decision), every class (with ``split``, every level of a legal class is
    legal; likewise with ``cap``). An illegal action is replaced by the legal class of
    smallest index (at the engine's native level), and ``info["illegal_action"]`` is ``True``
    (``info["action"]`` is the action actually applied).

    **Observation space** ``Box(0, 1, (3K + J + C,), float32)``, with ``x -> x / (x + c)``
    mapping counts into ``[0, 1)`` (``C``: the engines with a limited KV cache, usually 0):

    ============  =============================================================  ============
    index         observation                                                    ``c``
    ============  =============================================================  ============
    ``k``         jobs of class ``k`` waiting (LLM: prefill not finished)        10 jobs
    ``K + k``     jobs of class ``k`` in service (LLM: decoding)                 10 jobs
    ``2K + k``    remaining work of class ``k`` (tokens, or seconds)             ``10 w_k``
    ``3K + j``    1 if engine ``j`` decides now, else 0                          (one-hot)
    ``3K+J+i``    share of the KV cache free at the ``i``-th engine with one     (a share)
    ============  =============================================================  ============

    ``w_k`` is the mean work of one job of class ``k`` (tokens at an LLM engine, seconds at a
    station), so ten jobs' worth of work maps to 0.5. Counts and work are summed over the
    class's engines. "In service" at an LLM engine includes the jobs whose last token is in the
    running batch; remaining work counts the tokens not yet put in a batch (at a station, the
    seconds of service left). After the last step no engine decides (the one-hot is all zero).
    There is no clock in the observation: the task is a stationary average-cost problem, and
    truncation at the horizon is a time limit (SB3 bootstraps the value there), not an end the
    agent should plan for.

    **Reward**: ``-reward_scale * sum_k h_k * integral of jobs_k(t) dt`` over the simulated
    time from the previous decision to the next one (``h_k``: holding cost per job-second,
    ``reward_scale`` default 1). The first step's reward also counts the cost accrued before
    the first decision, so an episode's rewards sum to minus the holding cost integral over
    ``[0, horizon]``: ``-reward_scale * horizon * result().holding_cost``.

    **Episode end**: truncation when the simulated clock reaches ``horizon`` seconds; the
    episode never terminates (the network has no terminal state).

    **Arguments**: ``horizon`` (simulated seconds, default 600); ``load`` (``None``: the
    network's own rates; else the fraction of the capacity boundary of the static planning LP:
    rates times ``load * theta*``); ``random_init`` (start with ``init_jobs``-bounded random job
    counts, uniform on ``0..init_jobs`` per class outside forks, default ``False``; also a
    ``reset`` option); ``init_jobs`` (default 20); ``reward_scale`` (default 1);
    ``skip_trivial`` (default ``True``: epochs where every action gives the same batch, at most
    one class having work at the engine, are taken automatically and are not steps);
    ``action`` (``order``, ``split`` or ``cap``) and ``split_levels`` (see the action space);
    ``loop`` (``auto``, the default: the simulator's compiled event loop where the network may
    take it, else its Python loop; ``python``; ``compiled``, a ``ValueError`` naming the
    reason where it may not): both loops give the same episodes bit for bit, the compiled one
    2x to 3x faster (:attr:`loop` says which runs).

    **Randomness**: all from ``self.np_random``; ``reset(seed=s)`` draws the simulator's seed
    (``info["sim_seed"]``) and the initial counts from it, so a seed fixes the episode given the
    actions.

    **Info** (after reset and every step): ``time`` (s), ``engine`` (deciding engine, -1 if
    none), ``jobs`` (in the network now), ``holding_cost_rate`` (``sum_k h_k jobs_k`` now, per
    second), ``mean_jobs`` and ``mean_holding_cost`` (time averages since 0), ``decisions``
    (steps so far), ``action`` and ``illegal_action`` (the last step's), ``sim_seed``.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (Gymnasium's convention)

    def __init__(
        self,
        network: str | Path | NetworkSpec = "rybko-stolyar",
        horizon: float = 600.0,
        load: float | None = None,
        random_init: bool = False,
        init_jobs: int = 20,
        reward_scale: float = 1.0,
        skip_trivial: bool = True,
        render_mode: str | None = None,
        action: str = "order",
        split_levels: int = 5,
        loop: str = "auto",
    ) -> None:
        if action not in ACTION_MODES:
            raise ValueError(f"action must be one of {', '.join(ACTION_MODES)}, got {action!r}")
        if not (isinstance(split_levels, int) and split_levels >= 2):
            raise ValueError(f"split_levels must be an integer >= 2, got {split_levels!r}")
        if not (isinstance(horizon, (int, float)) and math.isfinite(horizon) and horizon > 0):
            raise ValueError(f"horizon must be a positive number of seconds, got {horizon!r}")
        if load is not None and not (math.isfinite(load) and load > 0):
            raise ValueError(f"load must be a positive fraction of the LP boundary, got {load!r}")
        if init_jobs < 0:
            raise ValueError(f"init_jobs must be >= 0, got {init_jobs!r}")
        if not (math.isfinite(reward_scale) and reward_scale > 0):
            raise ValueError(f"reward_scale must be > 0, got {reward_scale!r}")
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported (none is)")
        net = resolve_network(network)
        if load is not None:
            net = net.scaled(load * static_plan(net).theta)
        self.net = net
        self.horizon = float(horizon)
        self.load = load
        self.random_init = bool(random_init)
        self.init_jobs = int(init_jobs)
        self.reward_scale = float(reward_scale)
        self.skip_trivial = bool(skip_trivial)
        self.render_mode = render_mode
        topo = net.topology
        self.n_classes = K = topo.n_classes
        self.n_engines = J = topo.n_engines
        self.holding_cost = np.asarray(topo.holding_cost, dtype=float)
        self._h = self.holding_cost.tolist()
        self.work_scale = WORK_SCALE * np.maximum(np.asarray(topo.work, dtype=float), 1e-12)
        # the c of x / (x + c) for the first 3K entries of the observation
        self._scale = observation_scale(net)
        self.in_fork = np.array([bool(f) for f in topo.forks])
        self.action_mode = action
        if action == "cap" and not has_llm_engine(net):
            raise ValueError(
                f"action='cap' needs an LLM engine (a batch to cap); {net.name} has none: use "
                "action='order'"
            )
        # the action layout, shared with AgentPolicy; L levels (1 with action='order')
        self.decoder = ActionDecoder(net, int(split_levels) if action == "split" else 1, action)
        self.split_levels = L = self.decoder.split_levels
        if action == "split":
            mixing = [
                name
                for name, e in net.engines.items()
                if e.kind == "llm" and e.scheduler.mixes and not e.scheduler.request_level
            ]
            if not mixing:
                raise ValueError(
                    "action='split' needs an LLM engine whose scheduler mixes prefill and decode "
                    f"in one batch (sarathi or orca); {net.name} has none: use action='order'"
                )
        self.action_space = spaces.Discrete(K * L)
        self.loop = self._choose_loop(loop)
        C = sum(1 for e in net.engines.values() if getattr(e, "kv_cache", None) is not None)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(3 * K + J + C,), dtype=np.float32)
        self.sim: NetworkSimulator | None = None
        self.engine: int | None = None
        self._mask = np.ones(K, dtype=bool)  # legal classes (actions: repeated L times)
        self._legal = [True] * K  # the same, as Python bools (the step's legality check)
        # the masks of the legal-class sets met so far: (engine, legal classes as a tuple, or
        # as the kernel's bit mask) -> (array, bools)
        self._masks: dict[tuple[int, object], tuple[np.ndarray, list[bool]]] = {}
        self._last_cost = 0.0
        self._steps = 0
        self._over = True

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``options``: ``{"random_init": bool}`` overrides the argument."""
        super().reset(seed=seed)
        options = options or {}
        random_init = bool(options.get("random_init", self.random_init))
        sim_seed = int(self.np_random.integers(2**63 - 1))
        self.sim = NetworkSimulator(
            self.net, None, horizon=self.horizon, warmup=0.0, seed=sim_seed, loop=self.loop
        )
        self.sim.ask_single = self.action_mode == "cap"  # a cap is a decision at one class too
        self._watched: tuple[np.ndarray, np.ndarray] | None = None
        self._numbers: list[float] = []  # the watched numbers at the last decision
        if self.loop == "compiled":  # the kernel computes the observation and the costs
            self.sim.watch(self._scale, self._h)
        if random_init:
            counts = self.np_random.integers(0, self.init_jobs + 1, size=self.n_classes)
            counts[self.in_fork] = 0
            self.sim.add_jobs(counts.tolist())
        self._last_cost = 0.0
        self._steps = 0
        self._over = False
        self._advance()
        obs, numbers = self._observe()
        return obs, self._info(-1, False, *numbers)

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict]:
        """Apply ``action`` at the deciding engine and run to the next decision or the horizon."""
        if self._over or self.sim is None:
            raise RuntimeError("the episode is over (truncated at the horizon): call reset()")
        sim = self.sim
        j = self.engine
        decoder, view = self.decoder, sim.view
        a = int(action)
        L = self.split_levels
        first, level = divmod(a, L) if L > 1 else (a, 0)
        if 0 <= a < decoder.n_actions and self._legal[first]:
            illegal = False  # as decoder.decode finds it, without building its Decision
        else:
            d = decoder.decode(a, self._mask, view, j)
            a, first, level, illegal = d.action, d.first, d.level, d.illegal
        if j is not None:
            if L == 1:
                sim.decide_first(first)
            else:
                sim.decide_first(first, *decoder.limits(view, j, level))
        self._steps += 1
        self._advance()
        obs, numbers = self._observe()
        cost = numbers[1]
        reward = -self.reward_scale * (cost - self._last_cost)
        self._last_cost = cost
        truncated = self.engine is None
        self._over = truncated
        return obs, reward, False, truncated, self._info(a, illegal, *numbers)

    def action_masks(self) -> np.ndarray:
        """Legal actions (bool, shape ``(K * L,)``, ``L = 1`` unless ``action='split'``; never
        all false): see the class docstring."""
        return self.decoder.action_mask(self._mask)

    def class_mask(self) -> np.ndarray:
        """The legal classes at the deciding engine (bool, shape ``(K,)``; never all false)."""
        return self._mask.copy()

    def native_level(self, engine: int | None) -> int:
        """The level that reproduces ``engine``'s own rule: with ``action='split'``, ``L - 1``
        (decode first) for a decode-first scheduler such as Sarathi-Serve, ``0`` (prefill
        first) for one such as Orca, ``0`` without an engine; with ``action='cap'``, ``L - 1``
        (the full budget); ``0`` with ``action='order'``."""
        if self.split_levels == 1:
            return 0
        view = None if self.sim is None else self.sim.view
        return self.decoder.native_level(view, engine)  # type: ignore[arg-type]

    def decode_cap(self, engine: int, level: int) -> int | None:
        """Decode tokens served before prefill at split ``level``: ``round(level / (L - 1) *
        b)`` of ``engine``'s token budget ``b`` (level ``L - 1``: the whole budget); ``None``
        without a split or at a station (the scheduler's own rule)."""
        assert self.sim is not None
        return self.decoder.decode_cap(self.sim.view, engine, level)

    def encode_action(self, k: int, level: int | None = None) -> int:
        """The action that puts class ``k`` first with split ``level`` (``None``: the deciding
        engine's :meth:`native_level`)."""
        if level is None:
            level = self.native_level(self.engine)
        return self.decoder.encode(k, level)

    def result(self) -> NetworkResult:
        """The simulator's metrics of the episode (after truncation; warmup 0)."""
        if self.sim is None or not self.sim.finished:
            raise RuntimeError("the episode has not reached its horizon yet")
        return self.sim.result()

    # ------------------------------------------------------------------ internals
    def _choose_loop(self, loop: str) -> str:
        """The simulator's event loop for ``loop`` (``auto``, ``python``, ``compiled``):
        ``compiled`` where the network may run in it, else ``python``; ``compiled``
        asked where impossible is a ``ValueError`` naming the reason."""
        if loop not in LOOPS:
            raise ValueError(f"loop must be one of {', '.join(LOOPS)}, got {loop!r}")
        if loop == "python":
            return loop
        probe = NetworkSimulator(self.net, None, horizon=1.0)
        reason = why_not(probe) or (None if numba_available() else "numba is not installed")
        if reason is None:
            return "compiled"
        if loop == "compiled":
            raise ValueError(f"loop: compiled is not possible here: {reason}; use loop='python'")
        return "python"

    def _advance(self) -> None:
        """Run to the next decision an agent takes (or the horizon); update the mask."""
        sim = self.sim
        assert sim is not None
        decoder, view = self.decoder, sim.view
        classes_at = view.classes_at
        skip = self.skip_trivial
        # without a budget split, the simulator itself takes the epochs where at most one class
        # has work (as the loop below would)
        fast = skip and self.split_levels == 1
        legal: list[int] | None = None
        while True:
            j = sim.advance(fast)
            if j is None:
                self.engine = None
                self._mask = decoder.class_mask(view, None)
                self._legal = [True] * self.n_classes
                return
            if fast:  # (the simulator asks only where two classes or more have work)
                break
            legal = sim.classes_with_work(j)
            if not skip or len(legal) >= 2 or decoder.asks(view, j, legal):
                break
            sim.decide(classes_at[j])  # every order gives the same batch
        self.engine = j
        # the legal classes: the kernel's bit mask (compiled loop) or the simulator's list
        watched = self._watched
        if watched is None and self.loop == "compiled":
            watched = self._watched = sim.watched  # (the kernel starts at the first advance)
        if watched is not None:
            self._numbers = watched[1].tolist()  # (one read for the mask, costs and info)
            key: tuple[int, object] = (j, int(self._numbers[4]))
        else:
            legal = sim.classes_with_work(j) if legal is None else legal
            key = (j, tuple(legal))
        masks = self._masks.get(key)
        if masks is None:  # the arrays are never written: a mask is shared by its steps
            legal = sim.classes_with_work(j) if legal is None else legal
            mask = decoder.class_mask(view, j, legal)
            masks = self._masks[key] = (mask, mask.tolist())
        self._mask, self._legal = masks

    def _observe(self) -> tuple[np.ndarray, list[float]]:
        """The observation now (:func:`observation`) and ``[job-seconds, holding cost
        integral, jobs, holding cost rate]`` now (the compiled loop computes both at a
        decision: :meth:`NetworkSimulator.watch`)."""
        sim = self.sim
        assert sim is not None
        watched = self._watched
        if watched is not None and self.engine is not None:
            return watched[0].copy(), self._numbers[:4]
        seconds, cost = sim.cost_so_far(self._h)
        counts = sim.jobs.tolist()
        rate = sum([h * n for h, n in zip(self._h, counts, strict=True)])
        numbers = [seconds, cost, sum(counts), rate]
        return observation(sim.view, self.engine, self._scale), numbers

    def _info(
        self, action: int, illegal: bool, seconds: float, cost: float, jobs: float, rate: float
    ) -> dict[str, Any]:
        """Metrics so far; ``seconds``: job-seconds up to now (all classes), ``cost``: the
        holding cost integral up to now, ``jobs`` and ``rate``: the jobs in the network and
        the holding cost rate now."""
        sim = self.sim
        assert sim is not None
        now = sim.now if sim.now < self.horizon else self.horizon
        return {
            "time": now,
            "engine": -1 if self.engine is None else self.engine,
            "jobs": jobs,
            "holding_cost_rate": rate,
            "mean_jobs": seconds / now if now > 0 else jobs,
            "mean_holding_cost": cost / now if now > 0 else rate,
            "decisions": self._steps,
            "action": action,
            "illegal_action": illegal,
            "sim_seed": sim.seed,
        }


def llm_engine_network() -> NetworkSpec:
    """The one-engine network of ``policyopt/LLMEngine-v0`` (at nominal load 0.9).

    One default LLM engine ``llm`` (token budget 512, the paper's staircase, Sarathi-Serve;
    ``mu`` ~ 3342.9 tokens/s) serves two classes, each bringing half of the load:

    * ``chat``: short interactive requests, lognormal (sigma 0.6) prompts of mean 128 tokens
      and outputs of mean 64, holding cost 2 per job-second;
    * ``long``: long document tasks, lognormal prompts of mean 512 tokens (up to 2048) and
      outputs of mean 256, holding cost 1 per job-second.

    Maximum pressure orders by ``z_k / w_k`` and ignores holding costs; a c-mu-type rule (chat
    first: ``h / w`` is about 2/192 against 1/768) is the natural benchmark.
    """
    from policyopt.model.engine import EngineSpec
    from policyopt.solvers.capacity import token_capacity

    mu = float(token_capacity(EngineSpec())[0])
    tokens = {"chat": (128, 64, 2.0), "long": (512, 256, 1.0)}
    classes = {
        name: {
            "engine": "llm",
            "prompt": {"kind": "lognormal", "mean": p, "sigma": 0.6},
            "output": {"kind": "lognormal", "mean": d, "sigma": 0.6},
            "max_prompt_len": 2048,
            "holding_cost": h,
        }
        for name, (p, d, h) in tokens.items()
    }
    workflows = [
        {
            "name": name,
            "arrival": {"kind": "poisson", "rate": 0.45 * mu / (p + d)},
            "entry": name,
            "after": {name: "exit"},
        }
        for name, (p, d, _) in tokens.items()
    ]
    return build(
        NetworkSpec,
        {
            "name": "llm-engine",
            "description": "one LLM engine, a short (chat) and a long class",
            "engines": {"llm": {"kind": "llm"}},
            "classes": classes,
            "workflows": workflows,
        },
    )


class LLMEngineEnv(AgentNetworkEnv):
    """One LLM engine serving a short ``chat`` class and a ``long`` class (``K = 2``, ``J = 1``).

    The network is :func:`llm_engine_network`; spaces, reward, episode end and info are those
    of :class:`AgentNetworkEnv` (a ``Box(0, 1, (7,), float32)`` observation). ``load``
    defaults to 0.9 of the engine's capacity and ``horizon`` to 300 simulated seconds.

    ``action="order"`` (default): ``Discrete(2)``, 0 = ``chat`` first, 1 = ``long`` first.
    ``action="split"``: ``Discrete(2 * L)`` (``L = split_levels``, default 5), action
    ``a = k * L + l``: class ``k`` first, and the token budget split at level ``l``: decode
    tokens first up to ``round(l / (L - 1) * 512)``, then prefill, then decoding fills what
    prefill left (level ``L - 1`` is Sarathi-Serve's decode-first rule, level 0 prefill
    first). Every level gives a work-conserving batch.
    """

    def __init__(self, horizon: float = 300.0, load: float | None = 0.9, **kwargs: Any) -> None:
        """``kwargs``: the other arguments of :class:`AgentNetworkEnv` (``random_init``,
        ``init_jobs``, ``reward_scale``, ``skip_trivial``, ``render_mode``, ``action``,
        ``split_levels``), with the same defaults."""
        if "network" in kwargs:
            raise TypeError("LLMEngineEnv has its own network; use AgentNetworkEnv for another")
        super().__init__(llm_engine_network(), horizon=horizon, load=load, **kwargs)
