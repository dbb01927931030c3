"""Train a stable-baselines3 agent on a policyopt environment (``policyopt train``).

:func:`train` runs PPO or A2C (stable-baselines3) or MaskablePPO (sb3-contrib, with the
environment's ``action_masks()``) on ``policyopt/AgentNetwork-v0`` for a network (library name
or file) or on a registered id such as ``policyopt/LLMEngine-v0``, and writes into ``out_dir``:

==========================  ===================================================================
``config.json``             network, env kwargs, algorithm, hyperparameters, seed, timesteps,
                            torch threads, status (``running``, ``interrupted``, ``failed``,
                            ``done``), library versions
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

Run directories: a fresh run refuses a directory that already holds a run (any of the files
above) unless ``overwrite`` (which deletes those files first, and nothing else); ``resume``
continues an interrupted or failed run from its latest checkpoint, and a finished run
(``model.zip``, status ``done``) from its final model when more timesteps are asked (it
refuses otherwise). Evaluations made before an interruption stay in ``eval/evaluations.npz``
and ``learning_curve.csv`` (a resumed run appends to them). Torch runs on one thread unless
asked (:func:`~policyopt.learn.common.set_threads`).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import importlib.util
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from policyopt.errors import SpecError
from policyopt.learn.common import (
    MAX_SEED,
    algo_class,
    check_algo,
    is_env_id,
    load_hyperparams,
    make_env,
    set_threads,
)
from policyopt.model.network import NetworkSpec
from policyopt.sweep import one_line_error

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


RUN_FILES = ("config.json", "model.zip", "vecnormalize.pkl", "learning_curve.csv")
RUN_DIRS = ("checkpoints", "eval", "best", "bc", "tb")
"""What a training run writes into its directory (``overwrite`` deletes these, only these)."""

PROGRESS_EVERY_S = 30.0
"""Wall seconds between two progress lines when stderr is not a terminal."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train`. ``checkpoint`` is the checkpoint saved (``None`` when the
    interrupt came before the RL phase, during behaviour cloning: nothing to resume);
    ``timesteps`` the env steps of the model then; ``phase`` ``"behaviour cloning"`` or
    ``"rl"``."""

    def __init__(self, checkpoint: Path | None, timesteps: int, phase: str) -> None:
        super().__init__("training interrupted")
        self.checkpoint = checkpoint
        self.timesteps = timesteps
        self.phase = phase


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
    threads: int = 1  # torch intra-op threads


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


def _duration(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 05 s`` or ``42 s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def _progress_callback(
    total: int,
    initial: int,
    enabled: bool,
    every: float = PROGRESS_EVERY_S,
    cost_scale: float = 1.0,
) -> Any:
    """Progress over env steps on stderr: a tqdm bar when stderr is a terminal, else one line
    every ``every`` wall seconds and one at the end (steps, steps/s, ETA and the last periodic
    evaluation as mean holding cost per second, ``-reward / cost_scale``). Set its ``eval_cb``
    to the evaluation callback to report evaluations."""
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class ProgressCallback(BaseCallback):
        eval_cb: Any = None

        def _on_training_start(self) -> None:
            self.tty = sys.stderr.isatty()
            self.lines = enabled and not self.tty
            self.t0 = self.t_last = time.perf_counter()
            self.start = int(self.model.num_timesteps)
            self.bar = tqdm(
                total=total,
                initial=initial,
                desc="train",
                unit="step",
                disable=not (enabled and self.tty),
                file=sys.stderr,
                smoothing=0.1,
            )

        def last_eval(self) -> str:
            cb = self.eval_cb
            if cb is None or not getattr(cb, "evaluations_timesteps", None):
                return "no evaluation yet"
            cost = -float(np.mean(cb.evaluations_results[-1])) / cost_scale
            return f"last evaluation at {cb.evaluations_timesteps[-1]:,} steps: {cost:.4g} cost/s"

        def line(self, end: bool = False) -> None:
            now = int(self.model.num_timesteps)
            wall = time.perf_counter() - self.t0
            sps = (now - self.start) / wall if wall > 0 else 0.0
            head = f"train: {now:,}/{total:,} steps ({100 * min(now, total) / total:.0f}%)"
            rate = f"{sps:,.0f} steps/s" if sps > 0 else "steps/s not known yet"
            if end:
                tail = f"done in {_duration(wall)}"
            elif sps > 0:
                tail = f"ETA {_duration(max(0, total - now) / sps)}"
            else:
                tail = "ETA not known yet"
            print(f"{head}, {rate}, {tail}; {self.last_eval()}", file=sys.stderr, flush=True)

        def _on_step(self) -> bool:
            self.bar.update(self.model.num_timesteps - self.bar.n)
            if self.lines and time.perf_counter() - self.t_last >= every:
                self.t_last = time.perf_counter()
                self.line()
            return True

        def _on_training_end(self) -> None:
            self.bar.close()
            if self.lines:
                self.line(end=True)

    return ProgressCallback()


def _bar(total: int, desc: str, unit: str, enabled: bool) -> Any:
    """A tqdm bar on stderr when it is a terminal (and ``enabled``)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not (enabled and sys.stderr.isatty()),
        file=sys.stderr,
    )


def _say(enabled: bool, text: str) -> None:
    """One progress line on stderr when it is not a terminal (a terminal shows the bars)."""
    if enabled and not sys.stderr.isatty():
        print(text, file=sys.stderr, flush=True)


def holds_run(out: Path) -> bool:
    """Does ``out`` hold (part of) a training run: any of :data:`RUN_FILES`, :data:`RUN_DIRS`?"""
    return any((out / name).exists() for name in (*RUN_FILES, *RUN_DIRS))


def clear_run(out: Path) -> None:
    """Delete the files and folders of a training run in ``out`` (nothing else)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in RUN_DIRS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        else:
            (out / name).unlink(missing_ok=True)


def _model_steps(path: Path) -> int:
    """The ``num_timesteps`` saved in a model zip."""
    from stable_baselines3.common.save_util import load_from_zip_file

    try:
        data, _, _ = load_from_zip_file(path, load_data=True, device="cpu")
        return int((data or {}).get("num_timesteps", 0))
    except Exception as err:  # a truncated or foreign zip
        raise SpecError(
            "--resume", f"cannot read {path}: {one_line_error(err)}", "use --overwrite"
        ) from None


def _resume_point(out: Path, algo: str, timesteps: int) -> tuple[Path, Path, int, dict[str, Any]]:
    """Where ``resume`` starts: (model, its reward-normalization file, its steps, the old
    config). A finished run continues from ``model.zip`` when more steps are asked; an
    interrupted or failed one from its latest checkpoint. Raises :class:`SpecError` when there
    is nothing to continue."""
    cfg_path = out / "config.json"
    old: dict[str, Any] = {}
    if cfg_path.is_file():
        try:
            old = json.loads(cfg_path.read_text())
        except (OSError, ValueError):
            old = {}
        if not isinstance(old, dict):
            old = {}
    if old.get("algo") not in (None, algo):
        raise SpecError(
            "--algo", f"{out} holds a {old.get('algo')} run", f"use --algo {old['algo']}"
        )
    final = out / "model.zip"
    if final.is_file() and old.get("status", "done") == "done":
        start, vecnorm = final, out / "vecnormalize.pkl"
        done = _model_steps(final)
        if timesteps <= done:
            raise SpecError(
                "--resume",
                f"{out} is a finished run of {done:,} steps",
                f"ask for more --timesteps than {done} to train it further, or use --overwrite "
                "to start again",
            )
        return start, vecnorm, done, old
    candidates: list[tuple[int, Path, Path]] = []
    checkpoint = latest_checkpoint(out)
    if checkpoint is not None:
        candidates.append((_model_steps(checkpoint), checkpoint, _vecnorm_path(checkpoint)))
    if final.is_file():  # a finished run resumed again, then stopped: the newer of the two
        candidates.append((_model_steps(final), final, out / "vecnormalize.pkl"))
    if not candidates:
        raise SpecError("--resume", f"no checkpoint in {str(out / 'checkpoints')!r}", "")
    done, start, vecnorm = max(candidates, key=lambda c: c[0])
    if timesteps <= done:
        raise SpecError(
            "--timesteps",
            f"{start.name} in {out} already has {done:,} steps",
            f"ask for more than {done}",
        )
    return start, vecnorm, done, old


def _restore_evaluations(cb: Any, out: Path, upto: int, episodes: int) -> None:
    """Put the evaluations already in ``out/eval/evaluations.npz`` (up to ``upto`` steps, with
    ``episodes`` episodes each) back into the evaluation callback ``cb``, which rewrites that
    file at each evaluation; its best reward too, so ``best/`` keeps the best model."""
    src = out / "eval" / "evaluations.npz"
    if not src.is_file():
        return
    try:
        data = np.load(src)
        rows = list(zip(data["timesteps"], data["results"], data["ep_lengths"], strict=True))
    except (OSError, ValueError, KeyError):
        return
    for t, r, n in rows:
        if int(t) <= upto and len(r) == episodes:
            cb.evaluations_timesteps.append(int(t))
            cb.evaluations_results.append([float(x) for x in r])
            cb.evaluations_length.append([int(x) for x in n])
    if cb.evaluations_results:
        cb.best_mean_reward = max(float(np.mean(r)) for r in cb.evaluations_results)
        cb.last_mean_reward = float(np.mean(cb.evaluations_results[-1]))


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
    overwrite: bool = False,
    threads: int | None = None,
    progress_every: float = PROGRESS_EVERY_S,
) -> TrainResult:
    """Train ``algo`` for ``timesteps`` env steps (all parallel envs together) and save it.

    ``env_id_or_network``: a registered id (``policyopt/LLMEngine-v0``) or a network for
    ``policyopt/AgentNetwork-v0``; ``hyperparams``: a YAML file or mapping over
    :data:`~policyopt.learn.common.DEFAULT_HYPERPARAMS`; ``resume``: continue the run in
    ``out_dir`` (up to ``timesteps`` in total): an interrupted or failed one from its latest
    checkpoint, a finished one from its final model; ``overwrite``: delete the run already in
    ``out_dir`` first (without it, and without ``resume``, such a directory is refused);
    ``bc_policy``: a heuristic (:func:`~policyopt.policies.make_policy` name) to imitate before
    the RL phase (not on resume), ``bc_steps`` samples of it (default ``bc.steps``);
    ``threads``: torch threads (default 1, or ``$OMP_NUM_THREADS``); ``progress``: a bar on a
    terminal, else a line every ``progress_every`` seconds; ``callbacks``: extra SB3
    callbacks. A Ctrl-C raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) after
    saving a checkpoint (during the RL phase) or nothing (during behaviour cloning); any other
    error marks ``config.json`` ``failed`` and propagates. Bad input raises :class:`SpecError`.
    """
    t_start = time.perf_counter()
    algo = check_algo(algo)
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)):
        raise SpecError("--timesteps", f"must be a whole number, got {timesteps!r}", "")
    _check_positive("timesteps", timesteps, "--timesteps")
    if (
        isinstance(seed, bool)
        or not isinstance(seed, (int, np.integer))
        or not 0 <= seed <= MAX_SEED
    ):
        raise SpecError(
            "--seed", f"must be a whole number from 0 to {MAX_SEED}, got {seed!r}", "e.g. 0"
        )
    if resume and overwrite:
        raise SpecError("--overwrite", "cannot be combined with --resume", "use one of them")
    hp = load_hyperparams(hyperparams)
    env_hp = hp["env"]
    _check_positive("horizon", env_hp["horizon"], "--horizon")
    n_envs = env_hp["n_envs"]
    _check_positive("n_envs", n_envs, "env.n_envs")
    if env_hp["vec_env"] not in ("dummy", "subproc", "sharded"):
        raise SpecError(
            "env.vec_env",
            f"unknown kind {env_hp['vec_env']!r}",
            "use dummy, subproc or sharded",
        )
    bc_count = 0
    if bc_policy is not None and not resume:
        from policyopt.policies import make_policy

        make_policy(bc_policy)  # a bad name fails before anything runs
        bc_count = int(bc_steps if bc_steps is not None else hp["bc"]["steps"])
        _check_positive("bc steps", bc_count, "bc.steps")
    out = Path(out_dir)
    for place in (out, *out.parents):
        if place.exists() and not place.is_dir():
            where = "is a file" if place == out else f"is inside {str(place)!r}, a file"
            raise SpecError("--out", f"{str(out)!r} {where}", "give a directory for the run")
    env_kwargs = {k: env_hp[k] for k in ENV_KEYS}
    target = env_id_or_network
    if isinstance(target, Path):
        target = str(target)
    probe = make_env(target, env_kwargs)  # checks the network and the env arguments
    net = probe.unwrapped.net
    classes = list(net.topology.classes)

    cls = algo_class(algo)
    start: Path | None = None  # the model a resumed run continues
    start_vecnorm: Path | None = None
    done = 0
    old: dict[str, Any] = {}
    if resume:
        start, start_vecnorm, done, old = _resume_point(out, algo, int(timesteps))
    elif holds_run(out):
        if not overwrite:
            raise SpecError(
                "--out",
                f"{str(out)!r} already holds a training run",
                "continue it with --resume, replace it with --overwrite, or choose another --out",
            )
        clear_run(out)
    n_threads = set_threads(threads)

    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback, EvalCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
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
        "bc_policy": bc_policy if not resume else old.get("bc_policy"),
        "threads": n_threads,
        "status": "running",
        "versions": versions(),
    }
    if resume and "bc" in old:
        config["bc"] = old["bc"]
    if start is not None:
        config["resumed_from"] = str(start)

    def write_config(**changes: Any) -> None:
        config.update(changes)
        cfg_path.write_text(json.dumps(config, indent=2, default=str))

    write_config()
    venv: Any = None
    eval_env: Any = None
    phase = "setup"
    try:
        env_fn = partial(make_env, target, env_kwargs)
        vec_kw: dict[str, Any] = {}
        if env_hp["vec_env"] == "subproc":
            vec_cls: Any = SubprocVecEnv
        elif env_hp["vec_env"] == "sharded":
            from policyopt.learn.sharded_vec_env import ShardedVecEnv

            vec_cls = ShardedVecEnv
            vec_kw = {"workers": min(int(env_hp["workers"]), int(n_envs))}
        else:
            vec_cls = DummyVecEnv
        venv = make_vec_env(
            env_fn, n_envs=int(n_envs), seed=int(seed), vec_env_cls=vec_cls, vec_env_kwargs=vec_kw
        )
        algo_kw = copy.deepcopy(hp[algo])  # SB3 may add to policy_kwargs in place
        gamma = float(algo_kw.get("gamma", 0.99))
        if algo == "ppo-avg":  # rewards centred by the average reward rate of the last rollout
            from policyopt.learn.average_cost import AverageRewardCentering

            venv = AverageRewardCentering(venv, window=int(algo_kw["n_steps"]) * int(n_envs))
        if env_hp["normalize_reward"]:
            venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=gamma)
            if start_vecnorm is not None and start_vecnorm.is_file():
                venv = VecNormalize.load(str(start_vecnorm), venv.venv)
                venv.training = True
        eval_cfg = hp["eval"]
        eval_env = make_vec_env(env_fn, n_envs=1, seed=int(seed) + 10_000, vec_env_cls=DummyVecEnv)
        if algo == "ppo-avg":  # the same wrappers as training (the scores are the monitor's raw
            from policyopt.learn.average_cost import AverageRewardCentering  # returns)

            eval_env = AverageRewardCentering(eval_env, window=int(algo_kw["n_steps"]))
        if env_hp["normalize_reward"]:  # raw rewards at evaluation, same wrapper structure
            eval_env = VecNormalize(eval_env, training=False, norm_obs=False, norm_reward=False)
        tb = str(out / "tb") if importlib.util.find_spec("tensorboard") is not None else None

        bc_stats: dict[str, Any] = {}
        if start is not None:
            model = cls.load(str(start), env=venv, device="cpu", tensorboard_log=tb)
            done = int(model.num_timesteps)
        else:
            model = cls(
                "MlpPolicy", venv, seed=int(seed), device="cpu", tensorboard_log=tb, **algo_kw
            )
            if bc_policy is not None:
                phase = "behaviour cloning"
                bc_stats = _warm_start(model, probe, bc_policy, bc_count, hp["bc"], seed, progress)
                # the clone before any RL step, a policy of its own (``ppo:OUT/bc``)
                (out / "bc").mkdir(exist_ok=True)
                model.save(str(out / "bc" / "model.zip"))
                bc_config = {**config, "bc": bc_stats}
                bc_config.update(status="behaviour cloning only", timesteps=0)
                (out / "bc" / "config.json").write_text(
                    json.dumps(bc_config, indent=2, default=str)
                )
                write_config(bc=bc_stats)
        probe.close()

        phase = "rl"
        n = int(n_envs)
        cost_scale = float(env_hp["reward_scale"]) * float(env_hp["horizon"])
        prog = _progress_callback(int(timesteps), done, progress, progress_every, cost_scale)
        cbs: list[Any] = [prog]
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
            eval_cb = eval_cls(
                eval_env,
                n_eval_episodes=int(eval_cfg["n_eval_episodes"]),
                eval_freq=max(1, eval_freq // n),
                log_path=str(out / "eval"),
                best_model_save_path=str(out / "best"),
                deterministic=True,
                verbose=0,
            )
            if start is not None:
                _restore_evaluations(eval_cb, out, done, int(eval_cfg["n_eval_episodes"]))
            prog.eval_cb = eval_cb
            cbs.append(eval_cb)
        cbs += list(callbacks or [])
        t_rl = time.perf_counter()
        model.learn(
            total_timesteps=int(timesteps) - done,
            callback=CallbackList(cbs),
            reset_num_timesteps=start is None,
            tb_log_name=algo,
        )
        rl_seconds = time.perf_counter() - t_rl
        rl_steps = int(model.num_timesteps) - done
        model_path = out / "model.zip"
        model.save(str(model_path))
        if isinstance(venv, VecNormalize):
            venv.save(str(out / "vecnormalize.pkl"))
    except KeyboardInterrupt:
        ckpt: Path | None = None
        steps = 0
        if phase == "rl":
            steps = int(model.num_timesteps)
            ckpt = out / "checkpoints" / f"model_{steps}_steps.zip"
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            model.save(str(ckpt))
            if isinstance(venv, VecNormalize):
                venv.save(str(_vecnorm_path(ckpt)))
        curve = write_learning_curve(out, float(env_hp["horizon"]), float(env_hp["reward_scale"]))
        write_config(
            status="interrupted",
            interrupted_during=phase,
            timesteps_done=steps,
            checkpoint=str(ckpt) if ckpt else None,
            learning_curve=str(curve) if curve else None,
        )
        _close(venv, eval_env, probe)
        raise TrainingInterrupted(ckpt, steps, phase) from None
    except BaseException as err:
        curve = write_learning_curve(out, float(env_hp["horizon"]), float(env_hp["reward_scale"]))
        write_config(
            status="failed",
            failed_during=phase,
            error=one_line_error(err),
            learning_curve=str(curve) if curve else None,
        )
        _close(venv, eval_env, probe)
        raise
    _close(venv, eval_env, probe)
    curve = write_learning_curve(out, float(env_hp["horizon"]), float(env_hp["reward_scale"]))
    sps = rl_steps / rl_seconds if rl_seconds > 0 and rl_steps > 0 else float("nan")
    write_config(
        status="done",
        timesteps_done=int(model.num_timesteps),
        train_seconds=round(rl_seconds, 3),
        steps_per_second=None if not np.isfinite(sps) else round(sps, 1),
        learning_curve=str(curve) if curve else None,
    )
    return TrainResult(
        out_dir=out,
        model_path=model_path,
        algo=algo,
        timesteps=int(model.num_timesteps),
        seconds=time.perf_counter() - t_start,
        steps_per_second=sps,
        resumed_from=str(start) if start else None,
        bc=bc_stats,
        threads=n_threads,
    )


def _warm_start(
    model: Any,
    env: Any,
    policy: str,
    steps: int,
    bc_hp: dict[str, Any],
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    """Behaviour cloning of ``policy`` into ``model`` (bars, or a line at each end); its
    statistics for ``config.json``."""
    from policyopt.learn import bc

    t0 = time.perf_counter()
    epochs = int(bc_hp["epochs"])
    _say(progress, f"bc: collecting {steps:,} samples of {policy}")
    with _bar(steps, f"bc {policy}", "sample", progress) as bar:
        demos = bc.collect(env, policy, steps=steps, seed=int(seed) + 20_000, progress=bar.update)
    _say(progress, f"bc: fitting the actor ({epochs} epochs)")
    with _bar(epochs, "bc fit", "epoch", progress) as bar:
        fit = bc.clone(
            model,
            demos,
            epochs=epochs,
            batch_size=int(bc_hp["batch_size"]),
            learning_rate=float(bc_hp["learning_rate"]),
            seed=int(seed),
            progress=bar.update,
        )
    seconds = time.perf_counter() - t0
    _say(progress, f"bc: accuracy {fit['accuracy']:.3f} in {_duration(seconds)}")
    return {
        "policy": policy,
        "samples": len(demos.actions),
        "episodes": demos.episodes,
        **fit,
        "seconds": seconds,
    }


def _close(*envs: Any) -> None:
    for env in envs:
        if env is not None:
            with contextlib.suppress(Exception):  # best effort after an error
                env.close()


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
