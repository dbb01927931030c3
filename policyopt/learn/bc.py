"""Behaviour-cloning warm start: imitate a heuristic policy before PPO starts.

Plain PPO on a queueing network starts from a uniformly random scheduler, which on networks
such as Rybko-Stolyar is far from good (and can be unstable), so its first updates learn from
exploding queues. The warm start rolls out a heuristic (any :func:`~policyopt.policies.make_policy`
name; default ``max-pressure``) in the environment, records at each step the observation, the
legal mask and the class the heuristic puts first among the legal ones, and fits the actor of
the stable-baselines3 policy to those actions by cross-entropy (plain torch on
``model.policy``) for a few epochs. Only the first class of the heuristic's order is imitated;
the environment fills the rest of the order by maximum pressure, so the clone of a static
priority is close to, not exactly, that priority (exactly, at engines with two classes). With
a budget-split action (``action="split"``) the heuristic's class is imitated at the engine's
own split level (:meth:`~policyopt.envs.agent_network.AgentNetworkEnv.native_level`); with the
cap action (``action="cap"``), at the full budget, or, for a heuristic that caps batches
(``batch-cap:...``), at the largest of the action's caps not above the heuristic's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from policyopt.policies import make_policy


@dataclass
class Demonstrations:
    """(observation, legal mask, action) triples of a heuristic, one per env step."""

    obs: np.ndarray  # (n, obs_size) float32
    masks: np.ndarray  # (n, K) bool
    actions: np.ndarray  # (n,) int64
    policy: str
    episodes: int


def collect(
    env: Any,
    policy: str = "max-pressure",
    steps: int = 20000,
    seed: int = 0,
    progress: Callable[[int], Any] | None = None,
) -> Demonstrations:
    """Roll out ``policy`` in ``env`` (a policyopt environment, wrapped or not) for ``steps``
    env steps (whole episodes are started with seeds ``seed, seed + 1, ...``). ``progress``
    is called with the number of new samples (every 256 and at the end)."""
    base = env.unwrapped
    heuristic = make_policy(policy)
    obs_l: list[np.ndarray] = []
    mask_l: list[np.ndarray] = []
    act_l: list[int] = []
    episodes = 0
    while len(act_l) < steps:
        obs, _ = env.reset(seed=seed + episodes)
        heuristic.bind(base.net)
        episodes += 1
        truncated = False
        while not truncated and len(act_l) < steps:
            legal = base.class_mask()
            view, j = base.sim.view, base.engine
            first = int(np.flatnonzero(legal)[0])
            if j is not None:
                order = heuristic.order(j, view)
                if order is None:  # FCFS: the class of the oldest job here
                    order = view.fcfs_order(j)
                first = next((k for k in order if legal[k]), first)
            level = None  # with a budget split or a cap: the engine's own rule
            if j is not None and base.action_mode == "cap" and heuristic.caps_tokens:
                level = _cap_level(base.decoder.caps, heuristic.token_cap(j, view))
            action = base.encode_action(first, level)
            obs_l.append(np.asarray(obs, dtype=np.float32))
            mask_l.append(base.action_masks())
            act_l.append(action)
            obs, _, _, truncated, _ = env.step(action)
            if progress is not None and len(act_l) % 256 == 0:
                progress(256)
    if progress is not None and len(act_l) % 256:
        progress(len(act_l) % 256)
    return Demonstrations(
        np.stack(obs_l), np.stack(mask_l), np.asarray(act_l, dtype=np.int64), str(policy), episodes
    )


def _cap_level(caps: list[int], cap: int | None) -> int:
    """The level of the largest of ``caps`` (the cap action's, the budget last) not above
    ``cap`` (the smallest if all are; the last, the full budget, for ``None``)."""
    if cap is None:
        return len(caps) - 1
    below = [i for i, c in enumerate(caps) if c <= cap]
    return below[-1] if below else 0


def clone(
    model: Any,
    demos: Demonstrations,
    epochs: int = 5,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, float]:
    """Fit ``model.policy``'s actor to ``demos`` by cross-entropy (Adam, ``epochs`` passes;
    ``progress`` is called with 1 after each).

    Returns ``{"loss": ..., "accuracy": ...}`` of the last epoch (mean negative log-likelihood
    per sample, nats; share of samples whose most likely action is the heuristic's). The
    value network is not fitted; PPO learns it from the first rollout.
    """
    import torch

    policy = model.policy
    masked = type(model).__name__ == "MaskablePPO"
    obs = torch.as_tensor(demos.obs, device=policy.device)
    actions = torch.as_tensor(demos.actions, device=policy.device)
    masks = demos.masks
    gen = np.random.default_rng(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    policy.set_training_mode(True)
    n = len(actions)
    loss_sum = correct = 0.0
    for _ in range(max(1, epochs)):
        perm = gen.permutation(n)
        loss_sum = correct = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            if masked:
                dist = policy.get_distribution(obs[idx], action_masks=masks[idx])
            else:
                dist = policy.get_distribution(obs[idx])
            logp = dist.log_prob(actions[idx])
            loss = -logp.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            with torch.no_grad():
                best = dist.distribution.probs.argmax(dim=1)
                correct += float((best == actions[idx]).sum())
        if progress is not None:
            progress(1)
    policy.set_training_mode(False)
    return {"loss": loss_sum / n, "accuracy": correct / n}
