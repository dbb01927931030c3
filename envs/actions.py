"""The environments' actions, decoded in one place.

With ``K`` classes and ``L`` levels (``L = 1`` in the ``order`` mode), an action of
:class:`~policyopt.envs.agent_network.AgentNetworkEnv` is ``a = k * L + level``: class ``k``
is served first at the deciding engine, the engine's other classes follow in
maximum-pressure order, and at an LLM engine the level sets the batch:

* ``split`` (``L`` budget-split levels): decode tokens are served before prefill up to
  ``round(level / (L - 1) * b)`` of the token budget ``b``;
* ``cap`` (``L`` = the caps of :func:`~policyopt.batch_cap.cap_levels`, the budget last): the
  batch holds at most the level's cap of tokens, as a ``batch-cap`` policy's batch does.

The legal actions are those of the classes with work at the engine (all of its classes if
none has work); an illegal action is replaced by the first legal class at the engine's native
level (its own split rule; the full budget).

:class:`ActionDecoder` does all of this from a :class:`~policyopt.policies.NetworkView`. The
environment uses it to apply an agent's action, and a trained agent running as a policy
(:class:`policyopt.learn.agent_policy.AgentPolicy`) uses it to turn its choice into a class
order, a decode cap and a token cap, so both apply an action identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policyopt.batch_cap import cap_levels
from policyopt.model.network import NetworkSpec
from policyopt.policies import MaxPressure, NetworkView

ACTION_MODES = ("order", "split", "cap")
"""``order``: the action is the class served first; ``split``: that class and a split of the
token budget between decode and prefill; ``cap``: that class and a cap on the batch's tokens
(see :class:`ActionDecoder`)."""


def split_matters(view: NetworkView, engine: int) -> bool:
    """Can a budget split change the batch ``engine`` forms now? True for an LLM engine whose
    scheduler mixes prefill and decode and that has both decoding and waiting jobs."""
    info = view.engines[engine]
    if not (info.llm and info.mixes and not info.request_level):
        return False
    waiting, decoding = view.engine_jobs(engine)
    return decoding > 0 and waiting > 0


@dataclass(frozen=True)
class Decision:
    """An action as applied: ``action`` (the replacement's, for an illegal one), the class
    served ``first``, the split ``level`` (0 without a split) and whether it was ``illegal``."""

    action: int
    first: int
    level: int
    illegal: bool


class ActionDecoder:
    """Encode and decode the actions of one network (``K`` classes, ``L`` levels).

    ``mode`` is one of :data:`ACTION_MODES`; ``split_levels`` is ``L`` in the ``split`` mode
    (``order``: 1; ``cap``: the number of :attr:`caps`). ``legal`` below is
    :meth:`NetworkView.classes_with_work` at the deciding engine. The decoder keeps a
    :class:`~policyopt.policies.MaxPressure` bound to the network for the order of the
    classes that follow the chosen one.
    """

    def __init__(self, net: NetworkSpec, split_levels: int = 1, mode: str | None = None) -> None:
        if not (isinstance(split_levels, int) and split_levels >= 1):
            raise ValueError(f"split_levels must be an integer >= 1, got {split_levels!r}")
        if mode is None:
            mode = "split" if split_levels > 1 else "order"
        if mode not in ACTION_MODES:
            raise ValueError(f"action must be one of {', '.join(ACTION_MODES)}, got {mode!r}")
        self.mode = mode
        self.caps: list[int] = cap_levels(net) if mode == "cap" else []
        """The token caps of the ``cap`` levels (increasing; the last is the budget)."""
        self.n_classes = net.topology.n_classes
        self.split_levels = {"order": 1, "split": split_levels, "cap": len(self.caps)}[mode]
        self.n_actions = self.n_classes * self.split_levels
        self.max_pressure = MaxPressure()
        self.max_pressure.bind(net)

    def asks(self, view: NetworkView, engine: int, legal: Sequence[int]) -> bool:
        """Is this decision a step for the agent? Yes if at least two classes have work; with
        a budget split, if the split can change the batch (:func:`split_matters`); with a cap,
        if a cap can (:meth:`cap_matters`); otherwise every action gives the same batch."""
        if len(legal) >= 2:
            return True
        if self.mode == "split":
            return split_matters(view, engine)
        return self.mode == "cap" and self.cap_matters(view, engine)

    def cap_matters(self, view: NetworkView, engine: int) -> bool:
        """Can a cap change the batch ``engine`` forms now? True at an LLM engine with prompts
        waiting, or with more decoding requests than the smallest cap (it may also be true
        when every cap happens to give the same batch)."""
        if not view.engines[engine].llm:
            return False
        waiting, decoding = view.engine_jobs(engine)
        return waiting > 0 or decoding > self.caps[0]

    def class_mask(
        self, view: NetworkView, engine: int | None, legal: Sequence[int] | None = None
    ) -> np.ndarray:
        """The legal classes (bool, shape ``(K,)``, never all false): ``legal`` (by default
        the classes with work at ``engine``), else all of the engine's classes; every class
        when no engine decides (``engine`` is ``None``)."""
        if engine is None:
            return np.ones(self.n_classes, dtype=bool)
        if legal is None:
            legal = view.classes_with_work(engine)
        mask = np.zeros(self.n_classes, dtype=bool)
        mask[list(legal) or list(view.classes_at[engine])] = True
        return mask

    def action_mask(self, class_mask: np.ndarray) -> np.ndarray:
        """The legal actions (bool, shape ``(K * L,)``): every level of a legal class."""
        if self.split_levels == 1:
            return class_mask.copy()
        return np.repeat(class_mask, self.split_levels)

    def native_level(self, view: NetworkView, engine: int | None) -> int:
        """The level of ``engine``'s own rule. Split: ``L - 1`` (decode first) for a
        decode-first scheduler such as Sarathi-Serve, ``0`` (prefill first) for one such as
        Orca, ``0`` without an engine. Cap: ``L - 1``, the full budget. ``0`` in the ``order``
        mode."""
        if self.mode == "cap":
            return self.split_levels - 1
        if self.split_levels == 1 or engine is None:
            return 0
        return self.split_levels - 1 if view.engines[engine].decode_first else 0

    def encode(self, first: int, level: int = 0) -> int:
        """The action that serves class ``first`` first at split ``level``."""
        return int(first) * self.split_levels + int(level)

    def decode(
        self, action: int, class_mask: np.ndarray, view: NetworkView, engine: int | None
    ) -> Decision:
        """``action`` as applied at ``engine`` given the legal classes ``class_mask``: its
        class and level, or, for an out-of-range action or an illegal class, the first legal
        class at the engine's :meth:`native_level`."""
        a = int(action)
        L = self.split_levels
        first, level = divmod(a, L)
        illegal = not (0 <= a < self.n_actions and class_mask[first])
        if illegal:
            first = int(np.flatnonzero(class_mask)[0])
            level = self.native_level(view, engine)
            a = first * L + level
        return Decision(a, first, level, illegal)

    def decode_cap(self, view: NetworkView, engine: int, level: int) -> int | None:
        """The decode tokens served before prefill at split ``level``: ``round(level / (L - 1)
        * b)`` of ``engine``'s token budget ``b``; ``None`` (the scheduler's own rule) without
        a split or at a station."""
        info = view.engines[engine]
        if self.mode != "split" or not info.llm:
            return None
        return round(level * info.token_budget / (self.split_levels - 1))

    def token_cap(self, view: NetworkView, engine: int, level: int) -> int | None:
        """The most tokens of the batch at cap ``level``: the level's cap, ``None`` (the
        engine's budget) at the last level, without a cap action, at a station, or where the
        cap is not below the engine's budget."""
        info = view.engines[engine]
        if self.mode != "cap" or not info.llm:
            return None
        cap = self.caps[level]
        return cap if cap < info.token_budget else None

    def limits(self, view: NetworkView, engine: int, level: int) -> tuple[int | None, int | None]:
        """``(decode_cap, token_cap)`` of ``level`` at ``engine`` (:meth:`decode_cap`,
        :meth:`token_cap`), for :meth:`NetworkSimulator.decide`."""
        return self.decode_cap(view, engine, level), self.token_cap(view, engine, level)

    def order(self, view: NetworkView, engine: int, first: int) -> list[int]:
        """The class order applied at ``engine``: ``first``, then the engine's other classes
        in maximum-pressure order."""
        return self.max_pressure.order_after(first, engine, view)
