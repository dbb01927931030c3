"""Average-cost PPO (``policyopt train --algo ppo-avg``): PPO on rewards centred by the
long-run average reward rate, with no discount.

A scheduling problem here is a long-run average-cost problem: the network has no terminal
state and the aim is the least holding cost per second. Discounted PPO (``ppo``) optimizes a
discounted sum instead, which for a discount near 1 approximates the average but whose values
grow with the queues. The average-cost form (Dai and Gluzman, "Queueing network controls via
deep reinforcement learning", Stochastic Systems 2022) learns a *relative* value function
instead: the reward of a step is centred by the average reward rate ``rho`` (per simulated
second, estimated from the previous rollout) times the simulated seconds the step took, and
the advantages are generalized advantage estimates of those centred rewards with discount 1
(``gamma: 1``) and ``gae_lambda < 1`` for the variance. What changes compared with ``ppo``:

* :class:`AverageRewardCentering` wraps the vector env: ``r_t - rho * dt_t``; ``rho`` is the
  sum of the rewards over the sum of the simulated seconds of the last ``window`` steps (one
  rollout: ``n_steps x n_envs``), 0 before the first rollout ends. Steps take different
  times (a decision epoch is not a clock tick), hence ``dt_t``: a step that lasted twice as
  long is charged twice the average;
* the ``ppo-avg`` hyperparameters default to ``gamma: 1.0``, ``gae_lambda: 0.95`` and longer
  rollouts (``n_steps: 2048`` per env), long enough to contain several regeneration cycles of
  the library's networks at their loads;
* everything else is stable-baselines3's PPO (the model file is a PPO model: ``ppo-avg:DIR``
  and ``ppo:DIR`` load it alike).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper


class AverageRewardCentering(VecEnvWrapper):
    """Rewards less the average reward rate times each step's simulated seconds (read from
    ``info["time"]``, the episode's clock); ``rho`` (reward per second) is re-estimated every
    ``window`` steps (all envs together) from those steps."""

    def __init__(self, venv: VecEnv, window: int) -> None:
        super().__init__(venv)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self.rho = 0.0
        self._sum_r = 0.0
        self._sum_dt = 0.0
        self._count = 0
        self._clock = np.zeros(self.num_envs)

    def reset(self) -> Any:
        self._clock[:] = 0.0
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        now = np.array([float(info.get("time", 0.0)) for info in infos])
        dt = np.maximum(now - self._clock, 0.0)
        self._clock = np.where(dones, 0.0, now)  # a new episode's clock starts at 0
        raw = np.asarray(rewards, dtype=np.float64)
        self._sum_r += float(raw.sum())
        self._sum_dt += float(dt.sum())
        self._count += len(raw)
        centred = (raw - self.rho * dt).astype(np.float32)
        if self._count >= self.window:
            if self._sum_dt > 0:
                self.rho = self._sum_r / self._sum_dt
            self._sum_r = self._sum_dt = 0.0
            self._count = 0
        for info, r in zip(infos, raw, strict=True):
            info["raw_reward"] = float(r)
        return obs, centred, dones, infos
