"""A vector env whose copies run in a few worker processes, several copies per process.

stable-baselines3's ``SubprocVecEnv`` puts each copy in its own process and pays a pipe round
trip per copy per step. A step of these environments costs tens of microseconds, about what
the round trip costs, so on a small machine ``SubprocVecEnv`` is slower than stepping the
copies in one process (``DummyVecEnv``). :class:`ShardedVecEnv` gives each of ``workers``
processes a shard of the copies, held in a ``DummyVecEnv`` there, and sends one message per
worker per step carrying the actions of its whole shard: the round trip is paid once per
shard, the copies of different shards step in parallel. The copies step exactly as in a
``DummyVecEnv`` over all of them (the same seeds give the same observations, rewards and
infos; ``tests/test_sharded_vec_env.py``); observations must be arrays (a ``Box`` space).
``experiments/bench_env.py`` measures the three side by side.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper, VecEnvIndices


def _worker(remote: Any, parent: Any, fns: CloudpickleWrapper) -> None:
    """Serve the commands of the parent on a ``DummyVecEnv`` of this worker's shard."""
    parent.close()
    venv = DummyVecEnv(fns.var)
    try:
        while True:
            cmd, data = remote.recv()
            if cmd == "step":
                obs, rewards, dones, infos = venv.step(data)
                remote.send((obs, rewards, dones, infos, venv.reset_infos))
            elif cmd == "reset":
                venv._seeds, venv._options = data  # as DummyVecEnv.seed / set_options leave them
                obs = venv.reset()
                remote.send((obs, venv.reset_infos))
            elif cmd == "spaces":
                remote.send((venv.observation_space, venv.action_space))
            elif cmd == "env_method":
                name, args, kwargs, idx = data
                remote.send(venv.env_method(name, *args, indices=idx, **kwargs))
            elif cmd == "get_attr":
                remote.send(venv.get_attr(data[0], indices=data[1]))
            elif cmd == "set_attr":
                remote.send(venv.set_attr(data[0], data[1], indices=data[2]))
            elif cmd == "is_wrapped":
                remote.send(venv.env_is_wrapped(data[0], indices=data[1]))
            elif cmd == "close":
                venv.close()
                remote.close()
                return
            else:  # pragma: no cover - a programming error
                raise NotImplementedError(cmd)
    except (EOFError, KeyboardInterrupt):
        return


class ShardedVecEnv(VecEnv):
    """``len(env_fns)`` copies in ``workers`` processes (see the module docstring); copy ``i``
    lives in shard ``i * workers // n`` (contiguous shards of near-equal size)."""

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        workers: int = 2,
        start_method: str | None = None,
    ) -> None:
        n = len(env_fns)
        if not 1 <= workers <= n:
            raise ValueError(f"workers must be from 1 to the {n} copies, got {workers}")
        if start_method is None:
            methods = mp.get_all_start_methods()
            start_method = "forkserver" if "forkserver" in methods else "spawn"
        ctx = mp.get_context(start_method)
        bounds = [i * n // workers for i in range(workers + 1)]
        self.shards = [(bounds[w], bounds[w + 1]) for w in range(workers)]
        self.remotes: list[Any] = []
        self.processes: list[Any] = []
        for lo, hi in self.shards:
            remote, work = ctx.Pipe()
            fns = CloudpickleWrapper(list(env_fns[lo:hi]))
            proc = ctx.Process(target=_worker, args=(work, remote, fns), daemon=True)
            proc.start()
            work.close()
            self.remotes.append(remote)
            self.processes.append(proc)
        self.remotes[0].send(("spaces", None))
        obs_space, act_space = self.remotes[0].recv()
        self.waiting = False
        self.closed = False
        super().__init__(n, obs_space, act_space)

    # ------------------------------------------------------------------ stepping
    def step_async(self, actions: np.ndarray) -> None:
        for remote, (lo, hi) in zip(self.remotes, self.shards, strict=True):
            remote.send(("step", actions[lo:hi]))
        self.waiting = True

    def step_wait(self) -> Any:
        results = [remote.recv() for remote in self.remotes]
        self.waiting = False
        obs = np.concatenate([r[0] for r in results])
        rewards = np.concatenate([r[1] for r in results])
        dones = np.concatenate([r[2] for r in results])
        infos = [info for r in results for info in r[3]]
        self.reset_infos = [info for r in results for info in r[4]]
        return obs, rewards, dones, infos

    def reset(self) -> Any:
        for remote, (lo, hi) in zip(self.remotes, self.shards, strict=True):
            remote.send(("reset", (self._seeds[lo:hi], self._options[lo:hi])))
        results = [remote.recv() for remote in self.remotes]
        self.reset_infos = [info for r in results for info in r[1]]
        self._reset_seeds()
        self._reset_options()
        return np.concatenate([r[0] for r in results])

    def close(self) -> None:
        if self.closed:
            return
        if self.waiting:
            for remote in self.remotes:
                remote.recv()
        for remote in self.remotes:
            remote.send(("close", None))
        for proc in self.processes:
            proc.join()
        for remote in self.remotes:
            remote.close()
        self.closed = True

    # ------------------------------------------------------------------ by index
    def _by_shard(self, indices: VecEnvIndices) -> list[tuple[int, list[int]]]:
        """``(worker, local indices)`` of the copies ``indices``, in index order."""
        out: list[tuple[int, list[int]]] = []
        for i in self._get_indices(indices):
            w = next(w for w, (lo, hi) in enumerate(self.shards) if lo <= i < hi)
            if out and out[-1][0] == w:
                out[-1][1].append(i - self.shards[w][0])
            else:
                out.append((w, [i - self.shards[w][0]]))
        return out

    def _ask(self, cmd: str, make: Callable[[list[int]], Any], indices: VecEnvIndices) -> list[Any]:
        parts = self._by_shard(indices)
        for w, local in parts:
            self.remotes[w].send((cmd, make(local)))
        out: list[Any] = []
        for w, _ in parts:
            out.extend(self.remotes[w].recv())
        return out

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        return self._ask("env_method", lambda idx: (method_name, method_args, kwargs, idx), indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._ask("get_attr", lambda idx: (attr_name, idx), indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        parts = self._by_shard(indices)
        for w, local in parts:
            self.remotes[w].send(("set_attr", (attr_name, value, local)))
        for w, _ in parts:
            self.remotes[w].recv()

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return self._ask("is_wrapped", lambda idx: (wrapper_class, idx), indices)
