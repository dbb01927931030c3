"""Gymnasium environments over the network simulator (``docs/envs.md``).

Importing this package registers (once; importing again is harmless):

* ``policyopt/AgentNetwork-v0``: :class:`~policyopt.envs.agent_network.AgentNetworkEnv`, any
  network by library name or file (``gymnasium.make(ID, network="rybko-stolyar", ...)``);
* ``policyopt/LLMEngine-v0``: :class:`~policyopt.envs.agent_network.LLMEngineEnv`, one LLM
  engine serving a short and a long class.

``gymnasium.make("policyopt.envs:policyopt/AgentNetwork-v0")`` imports this package itself.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from policyopt.envs.agent_network import AgentNetworkEnv, LLMEngineEnv, llm_engine_network

ENV_IDS: dict[str, str] = {
    "policyopt/AgentNetwork-v0": "policyopt.envs.agent_network:AgentNetworkEnv",
    "policyopt/LLMEngine-v0": "policyopt.envs.agent_network:LLMEngineEnv",
}
"""The registered environment ids and their entry points."""


def register_envs() -> None:
    """Register :data:`ENV_IDS` with Gymnasium, skipping ids already registered."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point)


register_envs()

__all__ = ["ENV_IDS", "AgentNetworkEnv", "LLMEngineEnv", "llm_engine_network", "register_envs"]
