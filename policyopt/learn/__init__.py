"""Learned schedulers: train stable-baselines3 agents on the Gymnasium environments and judge
them against the designed policies (``docs/learning.md``).

* :mod:`policyopt.learn.train`: :func:`~policyopt.learn.train.train` (PPO, A2C, MaskablePPO),
  checkpoints, resume, a ``model.zip`` and a ``config.json``;
* :mod:`policyopt.learn.bc`: behaviour-cloning warm start from a heuristic policy;
* :mod:`policyopt.learn.agent_policy`: :class:`~policyopt.learn.agent_policy.AgentPolicy`, a
  trained model as a :class:`~policyopt.policies.Policy` (``ppo:DIR`` and friends);
* :mod:`policyopt.learn.evaluate`: every policy on the same random streams, with batch-means
  confidence intervals, a table, a CSV, a JSON and a figure.

The submodules import torch and stable-baselines3; this package itself imports nothing heavy.
"""

from __future__ import annotations
