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

Importing it registers the trained-agent policies ``ppo:DIR``, ``a2c:DIR`` and
``maskable-ppo:DIR`` with :func:`policyopt.policies.make_policy` (:func:`register_policies`).
The project declares :func:`register_policies` in the registry's entry-point group
(``policyopt.policies``), so ``make_policy("ppo:DIR")`` (and ``--policies ppo:DIR`` on the
command line) loads it when needed; torch is imported only when an agent is built.
"""

from __future__ import annotations

from functools import partial

from policyopt.learn.common import ALGOS
from policyopt.policies import Policy, register_policy


def load_agent(algo: str, path: str) -> Policy:
    """The ``algo`` model in ``path`` (a directory written by ``policyopt train``, or a .zip)
    as a policy: :class:`~policyopt.learn.agent_policy.AgentPolicy` (imports torch)."""
    from policyopt.learn.agent_policy import AgentPolicy

    return AgentPolicy(path, algo=algo)


def register_policies() -> None:
    """Register ``ALGO:DIR`` for every algorithm of :data:`~policyopt.learn.common.ALGOS`
    (calling it again replaces the entries: harmless)."""
    for algo in ALGOS:
        register_policy(f"{algo}:", partial(load_agent, algo), arg="DIR", replace=True)


register_policies()
