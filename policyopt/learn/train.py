"""Train a stable-baselines3 agent on a policyopt environment (``policyopt train``).

:func:`train` runs PPO or A2C (stable-baselines3) or MaskablePPO (sb3-contrib, with the
environment's ``action_masks()``) on ``policyopt/AgentNetwork-v0`` for a network (library name
or file) or on a registered id such as ``policyopt/LLMEngine-v0``, and writes into ``out_dir``:

==========================  ===================================================================
``config.json``             network, env kwargs, algorithm, hyperparameters, seed, timesteps,
                            status (``running``, ``interrupted``, ``done``), library versions
``model.zip``               the final model (what ``ppo:DIR`` / ``maskable-ppo:DIR`` load)
``checkpoints/``            ``model_<steps>_steps.zip`` (+ reward-normalization statistics)
                            every ``checkpoint.save_freq`` steps and on Ctrl-C
``eval/evaluations.npz``    SB3's periodic evaluations; ``learning_curve.csv`` the same as
                            mean holding cost per second
``best/best_model.zip``     the best model seen by the periodic evaluation
``bc/``                     with a warm start: the behaviour-cloned model before any RL step
                            (``model.zip``, ``config.json``), itself a policy (``ppo:DIR/bc``)
``tb/``                     TensorBoard logs, only when tensorboard is installed
==========================  ===================================================================
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import re
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from policyopt.errors import SpecError
from policyopt.learn.common import algo_class, check_algo, is_env_id, load_hyperparams, make_env
from policyopt.model.network import NetworkSpec

ENV_KEYS = (
    "horizon",
    "load",
    "random_init",
    "init_jobs",
    "reward_scale",
    "action",
    "split_levels",
)
"""The ``env`` hyperparameters passed to the environment (the others shape the vector env)."""


@dataclass
class TrainResult:
    """What :func:`train` did: where the model is, how many steps, how fast."""

    out_dir: Path
    model_path: Path
    algo: str
    timesteps: int  # env steps of the model at the end (all parallel envs together)
    seconds: float  # wall-clock seconds of this call (BC included)
    steps_per_second: float  # env steps per wall second during the RL phase of this call
    resumed_from: str | None = None
    bc: dict[str, Any] = field(default_factory=dict)


def versions() -> dict[str, str]:
    """Versions of the libraries a model depends on."""
    import gymnasium
    import stable_baselines3
    import torch

    import policyopt

    out = {
        "policyopt": policyopt.__version__,
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
    }
    try:
        import sb3_contrib

        out["sb3_contrib"] = sb3_contrib.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The checkpoint with the most steps in ``out_dir/checkpoints`` (``None``: none)."""
    best: tuple[int, Path] | None = None
    for p in (out_dir / "checkpoints").glob("model_*_steps.zip"):
        m = re.fullmatch(r"model_(\d+)_steps\.zip", p.name)
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return None if best is None else best[1]


def _vecnorm_path(checkpoint: Path) -> Path:
    steps = re.fullmatch(r"model_(\d+)_steps\.zip", checkpoint.name)
    assert steps is not None
    return checkpoint.parent / f"model_vecnormalize_{steps.group(1)}_steps.pkl"


def _progress_callback(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar over env steps (SB3's own bar needs rich; this one needs only tqdm)."""
    import sys

    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class TqdmCallback(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(
                total=total,
                initial=initial,
                desc="train",
                unit="step",
                disable=not (enabled and sys.stderr.isatty()),
                file=sys.stderr,
                smoothing=0.1,
            )

        def _on_step(self) -> bool:
            self.bar.update(self.model.num_timesteps - self.bar.n)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return TqdmCallback()


def _check_positive(name: str, value: Any, field_name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SpecError(field_name, f"{name} must be > 0, got {value!r}", "")


def _target_label(target: Any) -> str:
    if isinstance(target, NetworkSpec):
        return target.name
    return str(target)


def train(
    env_id_or_network: str | Path | NetworkSpec,
    algo: str = "ppo",
    timesteps: int = 100_000,
    seed: int = 0,
    out_dir: str | Path = "policyopt-results/train",
    hyperparams: str | Path | dict[str, Any] | None = None,
    resume: bool = False,
    bc_policy: str | None = None,
    bc_steps: int | None = None,
    progress: bool = True,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train ``algo`` for ``timesteps`` env steps (all parallel envs together) and save it.

    ``env_id_or_network``: a registered id (``policyopt/LLMEngine-v0``) or a network for
    ``policyopt/AgentNetwork-v0``; ``hyperparams``: a YAML file or mapping over
    :data:`~policyopt.learn.common.DEFAULT_HYPERPARAMS`; ``resume``: continue from the latest
    checkpoint in ``out_dir`` (up to ``timesteps`` in total); ``bc_policy``: a heuristic
    (:func:`~policyopt.policies.make_policy` name) to imitate before the RL phase (not on
    resume), ``bc_steps`` samples of it (default ``bc.steps``); ``callbacks``: extra SB3
    callbacks. A Ctrl-C (``KeyboardInterrupt``) saves a checkpoint and re-raises. Bad input
    raises :class:`SpecError`.
    """
    t_start = time.perf_counter()
    algo = check_algo(algo)
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)):
        raise SpecError("--timesteps", f"must be a whole number, got {timesteps!r}", "")
    _check_positive("timesteps", timesteps, "--timesteps")
    hp = load_hyperparams(hyperparams)
    env_hp = hp["env"]
    _check_positive("horizon", env_hp["horizon"], "--horizon")
    n_envs = env_hp["n_envs"]
    _check_positive("n_envs", n_envs, "env.n_envs")
    if env_hp["vec_env"] not in ("dummy", "subproc"):
        raise SpecError(
            "env.vec_env", f"unknown kind {env_hp['vec_env']!r}", "use dummy or subproc"
        )
    if bc_policy is not None:
        from policyopt.policies import make_policy

        make_policy(bc_policy)  # a bad name fails before anything runs
    out = Path(out_dir)
    env_kwargs = {k: env_hp[k] for k in ENV_KEYS}
    target = env_id_or_network
    if isinstance(target, Path):
        target = str(target)
    probe = make_env(target, env_kwargs)  # checks the network and the env arguments
    net = probe.unwrapped.net
    classes = list(net.topology.classes)

    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback, EvalCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    cls = algo_class(algo)
    checkpoint: Path | None = None
    cfg_path = out / "config.json"
    if resume:
        checkpoint = latest_checkpoint(out)
        if checkpoint is None:
            raise SpecError("--resume", f"no checkpoint in {str(out / 'checkpoints')!r}", "")
        if cfg_path.is_file():
            old = json.loads(cfg_path.read_text())
            if old.get("algo") not in (None, algo):
                raise SpecError(
                    "--algo", f"{out} holds a {old.get('algo')} run", f"use --algo {old['algo']}"
                )
    out.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "env_id": target if is_env_id(target) else "policyopt/AgentNetwork-v0",
        "network": net.name if isinstance(target, NetworkSpec) else _target_label(target),
        "network_name": net.name,
        "classes": classes,
        "engines": list(net.topology.engines),
        "env_kwargs": env_kwargs,
        "algo": algo,
        "hyperparameters": hp,
        "seed": int(seed),
        "timesteps": int(timesteps),
        "bc_policy": bc_policy,
        "status": "running",
        "versions": versions(),
    }
    cfg_path.write_text(json.dumps(config, indent=2, default=str))

    env_fn = partial(make_env, target, env_kwargs)
    vec_cls = SubprocVecEnv if env_hp["vec_env"] == "subproc" else DummyVecEnv
    venv = make_vec_env(env_fn, n_envs=int(n_envs), seed=int(seed), vec_env_cls=vec_cls)
    algo_kw = copy.deepcopy(hp[algo])  # SB3 may add to policy_kwargs in place
    gamma = float(algo_kw.get("gamma", 0.99))
    if env_hp["normalize_reward"]:
        venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=gamma)
        if checkpoint is not None and _vecnorm_path(checkpoint).is_file():
            venv = VecNormalize.load(str(_vecnorm_path(checkpoint)), venv.venv)
            venv.training = True
    eval_cfg = hp["eval"]
    eval_env = make_vec_env(env_fn, n_envs=1, seed=int(seed) + 10_000, vec_env_cls=DummyVecEnv)
    if env_hp["normalize_reward"]:  # raw rewards at evaluation, same wrapper structure
        eval_env = VecNormalize(eval_env, training=False, norm_obs=False, norm_reward=False)
    tb = str(out / "tb") if importlib.util.find_spec("tensorboard") is not None else None

    bc_stats: dict[str, Any] = {}
    if checkpoint is not None:
        model = cls.load(str(checkpoint), env=venv, device="cpu", tensorboard_log=tb)
        done = int(model.num_timesteps)
    else:
        model = cls("MlpPolicy", venv, seed=int(seed), device="cpu", tensorboard_log=tb, **algo_kw)
        done = 0
        if bc_policy is not None:
            from policyopt.learn import bc

            bc_hp = hp["bc"]
            steps = int(bc_steps if bc_steps is not None else bc_hp["steps"])
            _check_positive("bc steps", steps, "bc.steps")
            t0 = time.perf_counter()
            demos = bc.collect(probe, bc_policy, steps=steps, seed=int(seed) + 20_000)
            fit = bc.clone(
                model,
                demos,
                epochs=int(bc_hp["epochs"]),
                batch_size=int(bc_hp["batch_size"]),
                learning_rate=float(bc_hp["learning_rate"]),
                seed=int(seed),
            )
            bc_stats = {
                "policy": bc_policy,
                "samples": len(demos.actions),
                "episodes": demos.episodes,
                **fit,
                "seconds": time.perf_counter() - t0,
            }
            config["bc"] = bc_stats
            # the clone before any RL step, a policy of its own (``ppo:OUT/bc``)
            (out / "bc").mkdir(exist_ok=True)
            model.save(str(out / "bc" / "model.zip"))
            bc_config = {**config, "status": "behaviour cloning only", "timesteps": 0}
            (out / "bc" / "config.json").write_text(json.dumps(bc_config, indent=2, default=str))
    probe.close()

    n = int(n_envs)
    cbs: list[Any] = [_progress_callback(int(timesteps), done, progress)]
    save_freq = int(hp["checkpoint"]["save_freq"])
    if save_freq > 0:
        cbs.append(
            CheckpointCallback(
                save_freq=max(1, save_freq // n),
                save_path=str(out / "checkpoints"),
                name_prefix="model",
                save_vecnormalize=bool(env_hp["normalize_reward"]),
            )
        )
    eval_freq = int(eval_cfg["eval_freq"])
    if eval_freq > 0:
        eval_cls = EvalCallback
        if algo == "maskable-ppo":
            from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback

            eval_cls = MaskableEvalCallback
        cbs.append(
            eval_cls(
                eval_env,
                n_eval_episodes=int(eval_cfg["n_eval_episodes"]),
                eval_freq=max(1, eval_freq // n),
                log_path=str(out / "eval"),
                best_model_save_path=str(out / "best"),
                deterministic=True,
                verbose=0,
            )
        )
    cbs += list(callbacks or [])
    remaining = int(timesteps) - done
    t_rl = time.perf_counter()
    try:
        if remaining > 0:
            model.learn(
                total_timesteps=remaining,
                callback=CallbackList(cbs),
                reset_num_timesteps=checkpoint is None,
                tb_log_name=algo,
            )
    except KeyboardInterrupt:
        ckpt = out / "checkpoints" / f"model_{model.num_timesteps}_steps.zip"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        model.save(str(ckpt))
        if isinstance(venv, VecNormalize):
            venv.save(str(_vecnorm_path(ckpt)))
        config.update(status="interrupted", timesteps_done=int(model.num_timesteps))
        cfg_path.write_text(json.dumps(config, indent=2, default=str))
        venv.close()
        eval_env.close()
        raise
    rl_seconds = time.perf_counter() - t_rl
    rl_steps = int(model.num_timesteps) - done
    model_path = out / "model.zip"
    model.save(str(model_path))
    if isinstance(venv, VecNormalize):
        venv.save(str(out / "vecnormalize.pkl"))
    venv.close()
    eval_env.close()
    curve = write_learning_curve(out, float(env_hp["horizon"]), float(env_hp["reward_scale"]))
    sps = rl_steps / rl_seconds if rl_seconds > 0 and rl_steps > 0 else float("nan")
    config.update(
        status="done",
        timesteps_done=int(model.num_timesteps),
        resumed_from=str(checkpoint) if checkpoint else None,
        train_seconds=round(rl_seconds, 3),
        steps_per_second=None if not np.isfinite(sps) else round(sps, 1),
        learning_curve=str(curve) if curve else None,
    )
    cfg_path.write_text(json.dumps(config, indent=2, default=str))
    return TrainResult(
        out_dir=out,
        model_path=model_path,
        algo=algo,
        timesteps=int(model.num_timesteps),
        seconds=time.perf_counter() - t_start,
        steps_per_second=sps,
        resumed_from=str(checkpoint) if checkpoint else None,
        bc=bc_stats,
    )


def write_learning_curve(out: Path, horizon: float, reward_scale: float) -> Path | None:
    """``out/learning_curve.csv`` from ``out/eval/evaluations.npz``: per evaluation, env steps,
    mean episode reward and the mean holding cost per second it means
    (``-reward / (reward_scale * horizon)``). ``None`` when there was no evaluation."""
    src = out / "eval" / "evaluations.npz"
    if not src.is_file():
        return None
    data = np.load(src)
    path = out / "learning_curve.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timesteps", "mean_reward", "std_reward", "mean_holding_cost"])
        for t, r in zip(data["timesteps"], data["results"], strict=True):
            mean = float(np.mean(r))
            w.writerow([int(t), mean, float(np.std(r)), -mean / (reward_scale * horizon)])
    return path
