"""A trained agent as a network :class:`~policyopt.policies.Policy` (``ppo:DIR`` and friends).

:class:`AgentPolicy` loads a model written by ``policyopt train`` (``DIR/model.zip``, with
``DIR/config.json``) and acts inside a policy-mode run of
:class:`~policyopt.sim.network_sim.NetworkSimulator` exactly as it acted in the environment: at
each decision it rebuilds the environment's observation from the read-only view it receives
(:func:`policyopt.envs.agent_network.observation`), takes the deterministic action (the largest
logit; legal actions only for MaskablePPO), and lets the environment's own
:class:`~policyopt.envs.actions.ActionDecoder` turn it into a class order (that class first,
the engine's other classes in maximum-pressure order; an illegal choice of PPO / A2C replaced
by the legal class of smallest index) and, for a model trained with the budget-split action
(``env.action: split`` in its ``config.json``), the batch's decode cap
(:meth:`AgentPolicy.decode_cap`), or with the cap action (``env.action: cap``), the batch's
token cap (:meth:`AgentPolicy.token_cap`). Decisions the environment skips (every action gives
the same batch) take the maximum-pressure order without asking the model.

``policyopt.learn`` registers the names ``ppo:DIR``, ``a2c:DIR`` and ``maskable-ppo:DIR`` with
:func:`policyopt.policies.make_policy`; this module (and torch) is imported only when one is
built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from policyopt.envs.actions import ActionDecoder
from policyopt.envs.agent_network import observation, observation_scale
from policyopt.errors import SpecError
from policyopt.learn.common import algo_class, check_algo
from policyopt.model.network import NetworkSpec
from policyopt.policies import NetworkView, Policy


def _model_file(path: Path) -> Path:
    """``DIR/model.zip`` (or the .zip ``path`` itself); SpecError when there is none."""
    if path.is_file() and path.suffix == ".zip":
        return path
    if not path.exists():
        raise SpecError(
            "policy", f"no model directory {str(path)!r}", "train one with policyopt train"
        )
    if not path.is_dir():
        raise SpecError(
            "policy",
            f"{str(path)!r} is a file, not a model directory (or a .zip model)",
            "give a directory written by policyopt train",
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
        self.decoder: ActionDecoder | None = None  # the env's action layout, set by bind()
        self.scale: list[float] | None = None
        self.calls = 0  # decisions the model took
        env_kwargs = self.config.get("env_kwargs") or {}
        self.mode = str(env_kwargs.get("action", "order"))
        self.split_levels = int(env_kwargs.get("split_levels", 5)) if self.mode == "split" else 1
        self.splits = self.mode == "split"
        self.caps_tokens = self.mode == "cap"
        # the engine, decode cap and token cap of the decision order() just took
        self._taken: tuple[int, int | None, int | None] | None = None

    def bind(self, net: NetworkSpec) -> None:
        """Check that the model fits ``net`` (observation ``3K + J``, ``K * L`` actions, ``L``
        the split or cap levels, 1 with the ``order`` action)."""
        topo = net.topology
        K, J = topo.n_classes, topo.n_engines
        try:
            decoder = ActionDecoder(net, self.split_levels, self.mode)
        except (SpecError, ValueError) as err:
            raise SpecError("policy", f"{self.name} cannot act on {net.name}: {err}", "") from None
        L = decoder.split_levels
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
        self.decoder = decoder
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
        A2C, which may pick an illegal one; :meth:`order` then applies the env's replacement,
        the first legal class at the engine's own split level)."""
        logits = self.logits(obs)
        if self.masked:
            return int(np.argmax(np.where(mask, logits, -np.inf)))
        return int(np.argmax(logits))

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The class order at ``engine``: the model's class first (decoded as the
        environment does), the others in maximum-pressure order; the maximum-pressure order
        alone where the environment would not ask. Needs a simulator's view."""
        order, decode_cap, token_cap = self._decide(engine, view)
        self._taken = (engine, decode_cap, token_cap)
        return order

    def decode_cap(self, engine: int, view: NetworkView) -> int | None:
        """The decode cap (tokens) of the decision :meth:`order` just took (``None`` without a
        budget split, or when the model was not asked)."""
        taken, self._taken = self._taken, None
        return taken[1] if taken is not None and taken[0] == engine else None

    def token_cap(self, engine: int, view: NetworkView) -> int | None:
        """The batch's token cap, for a model trained with the ``cap`` action: that of the
        decision :meth:`order` just took at ``engine``, or, at an engine with one class (where
        the simulator asks no order), of the decision the model takes now; ``None`` (the full
        budget) where the environment would not ask."""
        taken, self._taken = self._taken, None
        if taken is not None and taken[0] == engine:
            return taken[2]
        return self._decide(engine, view)[2]

    def _decide(self, engine: int, view: NetworkView) -> tuple[list[int], int | None, int | None]:
        """``(order, decode cap, token cap)`` at ``engine``, as the environment applies the
        model's action (maximum pressure and no caps where it would not ask)."""
        decoder, scale = self.decoder, self.scale
        assert decoder is not None and scale is not None, "bind() first"
        legal = view.classes_with_work(engine)
        if not decoder.asks(view, engine, legal):
            # every action gives the same batch (the env does not ask here)
            return decoder.max_pressure.order(engine, view) or [], None, None
        classes = decoder.class_mask(view, engine, legal)
        action = self.act(observation(view, engine, scale), decoder.action_mask(classes))
        d = decoder.decode(action, classes, view, engine)
        self.calls += 1
        return decoder.order(view, engine, d.first), *decoder.limits(view, engine, d.level)
