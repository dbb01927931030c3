"""A trained agent as a network :class:`~policyopt.policies.Policy` (``ppo:DIR`` and friends).

:class:`AgentPolicy` loads a model written by ``policyopt train`` (``DIR/model.zip``, with
``DIR/config.json``) and acts inside a policy-mode run of
:class:`~policyopt.sim.network_sim.NetworkSimulator` exactly as it acted in the environment: at
each decision it rebuilds the environment's observation from the simulator
(:func:`policyopt.envs.agent_network.observation`), takes the deterministic action (the class
of largest logit; legal classes only for MaskablePPO, and for PPO / A2C an illegal choice is
replaced by the legal class of smallest index, as the environment does), and returns that class
first, the engine's other classes in maximum-pressure order. Decisions where at most one class
has work (which the environment skips) take the maximum-pressure order without asking the model.
A model trained with the budget-split action (``env.action: split`` in its ``config.json``)
also gives the batch's decode cap (:meth:`AgentPolicy.decode_cap`), as the environment applies
it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from policyopt.errors import SpecError
from policyopt.learn.common import algo_class, check_algo
from policyopt.model.network import NetworkSpec
from policyopt.policies import MaxPressure, NetworkView, Policy


def _model_file(path: Path) -> Path:
    """``DIR/model.zip`` (or the .zip ``path`` itself); SpecError when there is none."""
    if path.is_file() and path.suffix == ".zip":
        return path
    if not path.exists():
        raise SpecError(
            "policy", f"no model directory {str(path)!r}", "train one with policyopt train"
        )
    model = path / "model.zip"
    if not model.is_file():
        raise SpecError(
            "policy",
            f"{str(path)!r} has no model.zip",
            "give a directory written by policyopt train (or --resume an interrupted run)",
        )
    return model


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a model directory (``{}`` if absent); SpecError if corrupt.

    For a ``.zip`` inside a training directory's ``checkpoints/`` or ``best/`` folder, the
    training directory's ``config.json`` (so a checkpoint keeps its action layout)."""
    p = Path(path)
    folder = p.parent if p.is_file() else p
    cfg_path = folder / "config.json"
    if not cfg_path.is_file() and p.is_file() and folder.name in ("checkpoints", "best"):
        cfg_path = folder.parent / "config.json"
    if not cfg_path.is_file():
        return {}
    try:
        data = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as err:
        raise SpecError("policy", f"{cfg_path} is not a readable JSON file: {err}", "") from None
    if not isinstance(data, dict):
        raise SpecError("policy", f"{cfg_path} must hold a JSON object", "")
    return data


class _NumpyMLP:
    """The actor of an SB3 ``MlpPolicy`` (Linear + Tanh/ReLU layers, then ``action_net``) as
    numpy matrices: the same logits as torch (float32), about ten times faster per call."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, str | None]]) -> None:
        self.layers = layers

    @classmethod
    def from_policy(cls, policy: Any) -> _NumpyMLP | None:
        """The numpy copy of ``policy``'s actor, or ``None`` for an architecture it can't copy."""
        import torch
        from torch import nn

        if (
            not isinstance(policy.pi_features_extractor, nn.Flatten)
            and type(policy.pi_features_extractor).__name__ != "FlattenExtractor"
        ):
            return None
        layers: list[tuple[np.ndarray, np.ndarray, str | None]] = []
        modules = [*policy.mlp_extractor.policy_net, policy.action_net]
        for m in modules:
            if isinstance(m, nn.Linear):
                with torch.no_grad():
                    w = m.weight.detach().cpu().numpy().astype(np.float32).T.copy()
                    b = m.bias.detach().cpu().numpy().astype(np.float32).copy()
                layers.append((w, b, None))
            elif isinstance(m, (nn.Tanh, nn.ReLU)) and layers:
                w, b, _ = layers[-1]
                layers[-1] = (w, b, "tanh" if isinstance(m, nn.Tanh) else "relu")
            else:
                return None
        return cls(layers)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = obs.astype(np.float32)
        for w, b, act in self.layers:
            x = x @ w + b
            if act == "tanh":
                x = np.tanh(x)
            elif act == "relu":
                x = np.maximum(x, 0.0)
        return x


class AgentPolicy(Policy):
    """A trained stable-baselines3 model as a network policy (see the module docstring).

    ``path``: a directory written by ``policyopt train`` (or a ``.zip`` model file);
    ``algo``: ``ppo``, ``a2c`` or ``maskable-ppo`` (checked against ``config.json``). Loading
    and :meth:`bind` raise :class:`SpecError` for a missing or corrupt model and for a model
    whose observation or action shape does not fit the network.
    """

    def __init__(self, path: str | Path, algo: str = "ppo") -> None:
        self.algo = check_algo(algo, "policy")
        self.path = Path(path)
        self.name = f"{self.algo}:{path}"
        model_file = _model_file(self.path)
        self.config = read_config(self.path)
        trained = self.config.get("algo")
        if trained is not None and trained != self.algo:
            raise SpecError(
                "policy",
                f"{str(path)!r} holds a {trained} model, not {self.algo}",
                f"use {trained}:{path}",
            )
        try:
            self.model = algo_class(self.algo).load(str(model_file), device="cpu")
        except Exception as err:  # a corrupt zip can raise almost anything
            raise SpecError(
                "policy",
                f"cannot load the {self.algo} model {str(model_file)!r}: "
                f"{type(err).__name__}: {err}",
                "retrain, or check the algorithm",
            ) from None
        self.masked = self.algo == "maskable-ppo"
        obs_space, act_space = self.model.observation_space, self.model.action_space
        if getattr(obs_space, "shape", None) is None or len(obs_space.shape) != 1:
            raise SpecError("policy", f"{model_file}: not a model of a policyopt environment", "")
        if not hasattr(act_space, "n"):
            raise SpecError("policy", f"{model_file}: its action space is not Discrete", "")
        self.obs_size = int(obs_space.shape[0])
        self.n_actions = int(act_space.n)
        self.actor = _NumpyMLP.from_policy(self.model.policy)
        self.max_pressure = MaxPressure()
        self.scale: list[float] | None = None
        self.calls = 0  # decisions the model took
        env_kwargs = self.config.get("env_kwargs") or {}
        self.split_levels = (
            int(env_kwargs.get("split_levels", 5)) if env_kwargs.get("action") == "split" else 1
        )
        self.splits = self.split_levels > 1
        self._cap: int | None = None  # the decode cap of the decision just taken

    def bind(self, net: NetworkSpec) -> None:
        """Check that the model fits ``net`` (observation ``3K + J``, ``K * L`` actions, ``L``
        the split levels, 1 without a budget split)."""
        from policyopt.envs.agent_network import observation_scale

        topo = net.topology
        K, J = topo.n_classes, topo.n_engines
        L = self.split_levels
        if (self.obs_size, self.n_actions) != (3 * K + J, K * L):
            trained_on = self.config.get("network", "another network")
            raise SpecError(
                "policy",
                f"{self.name} was trained for {trained_on} (observation size {self.obs_size}, "
                f"{self.n_actions} actions), but {net.name} needs observation size "
                f"{3 * K + J} and {K * L} actions",
                "evaluate it on the network it was trained for",
            )
        classes = self.config.get("classes")
        if classes is not None and list(classes) != list(topo.classes):
            raise SpecError(
                "policy",
                f"{self.name} was trained for classes {', '.join(classes)}, but {net.name} has "
                f"{', '.join(topo.classes)}",
                "evaluate it on the network it was trained for",
            )
        self.max_pressure.bind(net)
        self.scale = observation_scale(net)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """The actor's action logits for one observation (float32, shape ``(K,)``)."""
        if self.actor is not None:
            return self.actor(obs)
        import torch

        policy = self.model.policy
        with torch.no_grad():
            t = torch.as_tensor(obs[None], dtype=torch.float32)
            features = policy.extract_features(t, policy.pi_features_extractor)
            latent = policy.mlp_extractor.forward_actor(features)
            return policy.action_net(latent)[0].numpy()

    def act(self, obs: np.ndarray, mask: np.ndarray) -> int:
        """The deterministic action for ``obs`` given the legal ``mask`` (over the ``K * L``
        actions): the largest logit among the legal actions (MaskablePPO) or overall (PPO,
        A2C), and ``-1`` when that one is illegal; :meth:`order` then applies the env's
        replacement (the first legal class, at the engine's own split level)."""
        logits = self.logits(obs)
        if self.masked:
            return int(np.argmax(np.where(mask, logits, -np.inf)))
        a = int(np.argmax(logits))
        return a if mask[a] else -1

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        self._cap = None
        order = self.max_pressure.order(engine, view) or []
        sim = view.simulator
        if sim is None:
            raise RuntimeError("AgentPolicy needs a NetworkSimulator's view (view.simulator)")
        from policyopt.envs.agent_network import observation, split_matters

        legal = sim.classes_with_work(engine)
        L = self.split_levels
        if len(legal) < 2 and not (L > 1 and split_matters(sim, engine)):
            return order  # every action gives the same batch (the env does not ask here)
        assert self.scale is not None, "bind() first"
        obs = observation(sim, engine, self.scale)
        classes = np.zeros(self.n_actions // L, dtype=bool)
        classes[legal or list(sim.engines[engine].classes)] = True
        a = self.act(obs, np.repeat(classes, L) if L > 1 else classes)
        eng = sim.engines[engine]
        if a < 0:  # the env's replacement: the first legal class, the engine's own level
            k, level = int(np.flatnonzero(classes)[0]), (L - 1 if eng.decode_first else 0)
        else:
            k, level = divmod(a, L)
        if L > 1 and eng.llm:
            self._cap = round(level * eng.b / (L - 1))
        self.calls += 1
        order.remove(k)
        order.insert(0, k)
        return order

    def decode_cap(self, engine: int, view: NetworkView) -> int | None:
        """The decode cap (tokens) of the decision :meth:`order` just took (``None`` without a
        budget split, or when the model was not asked)."""
        cap, self._cap = self._cap, None
        return cap
