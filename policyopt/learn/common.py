"""What training, warm start and the agent policy share: algorithms, env construction, and
the hyperparameter file."""

from __future__ import annotations

import contextlib
import copy
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from policyopt.errors import SpecError
from policyopt.model.files import read_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ALGOS = ("ppo", "a2c", "maskable-ppo", "ppo-avg")
"""The algorithm names of ``policyopt train --algo`` and of ``ALGO:DIR`` policies."""

DEFAULT_HYPERPARAMS: dict[str, Any] = {
    "env": {
        "horizon": 300.0,  # simulated seconds per training episode
        "load": None,  # None: the network's own rates (the library's are at 0.9 of the boundary)
        "random_init": False,
        "init_jobs": 20,
        "reward_scale": 1.0,
        "action": "order",  # order: the class first; split: and a decode/prefill split; cap: a cap
        "split_levels": 5,  # budget-split levels with action: split
        "n_envs": 4,  # parallel environments
        "vec_env": "dummy",  # dummy (one process), subproc (one per env), sharded (workers)
        "workers": 2,  # worker processes with vec_env: sharded (n_envs split between them)
        "normalize_reward": True,  # VecNormalize on rewards only (observations are bounded)
    },
    "ppo": {
        "learning_rate": 3.0e-4,
        "n_steps": 1024,  # per env, per update
        "batch_size": 512,
        "n_epochs": 10,
        "gamma": 0.999,  # about 1,000 decisions: some 70 simulated seconds on rybko-stolyar
        "gae_lambda": 0.98,
        "clip_range": 0.2,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "policy_kwargs": {"net_arch": [64, 64]},
    },
    "a2c": {
        "learning_rate": 7.0e-4,
        "n_steps": 16,
        "gamma": 0.99,
        "gae_lambda": 1.0,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "policy_kwargs": {"net_arch": [64, 64]},
    },
    "eval": {
        "eval_freq": 20000,  # env steps (all envs together) between evaluations; 0: none
        "n_eval_episodes": 2,
    },
    "checkpoint": {"save_freq": 20000},  # env steps (all envs together) between checkpoints
    "bc": {
        "steps": 20000,  # (obs, action) pairs collected from the heuristic
        "epochs": 5,
        "batch_size": 256,
        "learning_rate": 1.0e-3,
    },
}
"""Defaults of every hyperparameter (``experiments/configs/ppo_default.yaml``, documented in
``docs/learning.md``). Sections: ``env`` (environment keyword arguments, number and kind of
parallel environments), one per algorithm (keyword arguments of the stable-baselines3
constructor), ``eval``, ``checkpoint`` and ``bc`` (behaviour-cloning warm start)."""

MAX_SEED = 2**31 - 1
"""The largest training seed accepted (NumPy's legacy seeding, which stable-baselines3 uses,
takes seeds below 2**32; training also seeds its evaluation and warm-start environments with
offsets of the seed)."""

# MaskablePPO is PPO with action masks: the same defaults
DEFAULT_HYPERPARAMS["maskable-ppo"] = copy.deepcopy(DEFAULT_HYPERPARAMS["ppo"])
# average-cost PPO (policyopt.learn.average_cost): no discount, longer rollouts
DEFAULT_HYPERPARAMS["ppo-avg"] = {
    **copy.deepcopy(DEFAULT_HYPERPARAMS["ppo"]),
    "n_steps": 2048,
    "gamma": 1.0,
    "gae_lambda": 0.95,
}


def default_threads() -> int:
    """Torch threads when none are asked for: ``$OMP_NUM_THREADS`` when it is a positive whole
    number, else 1 (the policies here are small MLPs: one thread is the fastest, and more
    threads spin on cores that other processes need)."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else 1


def set_threads(threads: int | None = None, field: str = "--threads") -> int:
    """Set torch's intra-op threads to ``threads`` (``None``: :func:`default_threads`) and its
    inter-op threads to 1; return the intra-op count. Torch accepts the inter-op count once per
    process, before any parallel work: later calls leave it as it is. Imports torch."""
    n = default_threads() if threads is None else threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpecError(field, f"must be a whole number >= 1, got {threads!r}", "e.g. --threads 1")
    import torch

    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # already set, or inter-op work has started
        torch.set_num_interop_threads(1)
    return n


def check_algo(algo: str, field: str = "--algo") -> str:
    """``algo`` normalized, or a :class:`SpecError` naming ``field``."""
    name = str(algo).strip().lower().replace("_", "-")
    if name == "maskableppo":
        name = "maskable-ppo"
    if name not in ALGOS:
        raise SpecError(field, f"unknown algorithm {algo!r}", f"use one of {', '.join(ALGOS)}")
    return name


def algo_class(algo: str) -> type:
    """The stable-baselines3 (or sb3-contrib) class of ``algo``."""
    name = check_algo(algo)
    if name in ("ppo", "ppo-avg"):  # average-cost PPO is PPO on centred rewards
        from stable_baselines3 import PPO

        return PPO
    if name == "a2c":
        from stable_baselines3 import A2C

        return A2C
    from sb3_contrib import MaskablePPO

    return MaskablePPO


HYPERPARAMS_FIX = (
    "give a YAML file of hyperparameters (experiments/configs/ppo_default.yaml lists them all)"
)


def _merge(data: dict[str, Any]) -> dict[str, Any]:
    """:data:`DEFAULT_HYPERPARAMS` with the sections of ``data`` over them, key by key (a
    ``policy_kwargs`` given replaces the default one whole); unknown sections are kept, for
    the validation to name them."""
    out = copy.deepcopy(DEFAULT_HYPERPARAMS)
    for key, value in data.items():
        if key in out and isinstance(value, dict):
            out[key] = {**out[key], **copy.deepcopy(value)}
        elif key in out:
            raise SpecError(
                str(key),
                f"must be a mapping of keys to values, got {value!r}",
                f"write {key}: {{key: value, ...}}",
            )
        else:
            out[key] = value
    return out


def read_hyperparams(path: str | Path) -> dict[str, Any]:
    """The mapping in the hyperparameter file ``path`` (YAML; TOML for a ``.toml`` name).
    A missing file, a directory, a binary file, bad syntax, an empty file or one that does
    not hold a mapping raises :class:`SpecError` naming ``--config``."""
    p = Path(path)
    try:
        text = read_text(p, "a hyperparameter YAML file", HYPERPARAMS_FIX)
    except SpecError as err:
        name = repr(str(path))  # "'x' is a directory", "no such file 'x'"
        what = f"{name} {err.problem}" if err.problem.startswith("is ") else f"{err.problem} {name}"
        raise SpecError("--config", what, err.fix) from None
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        kind = "TOML" if p.suffix.lower() == ".toml" else "YAML"
        raise SpecError(
            "--config",
            f"{path}{line} is not valid {kind}: {str(err).splitlines()[0]}",
            "fix the syntax",
        ) from None
    if data is None:
        raise SpecError(
            "--config",
            f"{str(path)!r} holds no hyperparameters (it is empty)",
            "write the ones to change (experiments/configs/ppo_default.yaml lists them), or "
            "leave out --config for the defaults",
        )
    if not isinstance(data, dict):
        raise SpecError(
            "--config",
            f"{str(path)!r} must hold a mapping of sections (env, ppo, ...), not a "
            f"{type(data).__name__}",
            "write section: {key: value} pairs as in experiments/configs/ppo_default.yaml",
        )
    return data


def load_hyperparams(
    source: str | Path | dict[str, Any] | None, where: str | None = None
) -> dict[str, Any]:
    """:data:`DEFAULT_HYPERPARAMS` updated by a YAML file (path) or a mapping (``None``: the
    defaults), validated (:func:`~policyopt.learn.hyperparams.validate_hyperparams`): unknown
    sections or keys, values out of range or of the wrong type raise :class:`SpecError`
    naming the field (``ppo.learning_rate``). A valid input gives the same mapping as the
    merge alone: the keys given over the defaults. ``where``: the source named in errors
    (default: the file)."""
    from policyopt.learn.hyperparams import validate_hyperparams

    if source is None:
        return copy.deepcopy(DEFAULT_HYPERPARAMS)
    if isinstance(source, dict):
        data = source
    else:
        data = read_hyperparams(source)
        where = str(source) if where is None else where
    try:
        merged = _merge(data)
    except SpecError as err:
        fix = f"{err.fix} (in {where})" if where else err.fix
        raise SpecError(err.field, err.problem, fix) from None
    return validate_hyperparams(merged, where or "")


ENV_ID_PATTERN = re.compile(r"[\w:.-]+/[\w:.-]+-v\d+")
"""What a Gymnasium id with a namespace looks like (``policyopt/LLMEngine-v0``)."""


def policyopt_env_ids() -> list[str]:
    """The registered ``policyopt/...`` Gymnasium ids."""
    import gymnasium

    import policyopt.envs  # noqa: F401  (registers the ids)

    return sorted(k for k in gymnasium.registry if k.startswith("policyopt/"))


def is_env_id(name: object) -> bool:
    """Is ``name`` a registered Gymnasium id (rather than a network name or file)?"""
    if not isinstance(name, str) or "/" not in name or Path(name).exists():
        return False
    import gymnasium

    import policyopt.envs  # noqa: F401  (registers the ids)

    return name in gymnasium.registry


def check_env_id(name: object, field: str = "ENV_OR_NETWORK") -> None:
    """Refuse (:class:`SpecError` naming ``field``) a ``name`` that reads as a Gymnasium id
    (``namespace/Name-vN``, or anything under ``policyopt/``) but is not a registered
    ``policyopt/`` id; anything else (network names and files) passes."""
    if not isinstance(name, str) or Path(name).exists():
        return
    if not (name.startswith("policyopt/") or ENV_ID_PATTERN.fullmatch(name)):
        return
    ids = policyopt_env_ids()
    if name in ids:
        return
    problem = (
        f"{name!r} is not a policyopt environment (training needs one of its networks)"
        if is_env_id(name)
        else f"unknown environment id {name!r}"
    )
    raise SpecError(
        field,
        problem,
        f"use one of the registered ids {', '.join(ids)}, or a network (library name, see "
        "policyopt networks, or a network file)",
    )


def make_env(target: Any, env_kwargs: dict[str, Any]) -> Any:
    """One environment: ``target`` a registered id (``policyopt/LLMEngine-v0``), or a network
    (library name, file, :class:`~policyopt.model.network.NetworkSpec`) for
    ``policyopt/AgentNetwork-v0``. ``env_kwargs``: its keyword arguments. Bad input raises
    :class:`SpecError`."""
    import gymnasium

    import policyopt.envs  # noqa: F401

    check_env_id(target)
    kwargs = {k: v for k, v in env_kwargs.items() if v is not None or k == "load"}
    if isinstance(target, str) and is_env_id(target):
        if target == "policyopt/LLMEngine-v0" and kwargs.get("load") is None:
            kwargs.pop("load", None)  # keep the engine env's own default (0.9)
        try:
            return gymnasium.make(target, **kwargs)
        except ValueError as err:
            raise SpecError("env", str(err), "") from None
    try:
        return gymnasium.make("policyopt/AgentNetwork-v0", network=target, **kwargs)
    except SpecError:
        raise
    except ValueError as err:
        raise SpecError("env", str(err), "") from None
