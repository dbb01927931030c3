"""Benchmark: Gymnasium env steps per wall second against the policy-only simulator.

For each network, the same simulated run (same horizon, same random streams, warmup 0) is
timed several ways:

* **simulator**: ``NetworkSimulator(net, "max-pressure").run()`` in the Python event loop
  (``sim s``) and, where the network may take it, in the compiled loop (``compiled s``); its
  rate is decisions per wall second, a decision being a ``policy.order`` call;
* **env**: ``AgentNetworkEnv`` stepped to truncation with the max-pressure action (the first
  class of ``MaxPressure().order``), so it reproduces the simulator's run exactly: on the
  Python loop (``env py s``) and on the loop the env takes by default (``env s``: the compiled
  loop where the network and the action mode allow it), the agent's ``MaxPressure().order``
  call included; and ``replay s``, the default env replaying the actions recorded from that
  run (the env alone, without the agent's computation). Its rate is env steps per wall second
  (epochs where at most one class has work are taken automatically and are not steps).

``overhead`` is ``replay s / sim s`` (the env's cost over the policy-only simulator's for the
same run; the target is at most 1.5x); ``driven`` the same with the agent's max-pressure call
counted; ``python env`` the env on the Python loop, driven, over ``sim s``; ``vs compiled``
``replay s`` over the compiled policy-only run. Best of ``--repeat`` runs of each, the runs
alternating so that all meet the same machine load.

A second table gives the throughput a trainer sees: ``rybko-stolyar`` episodes stepped with
seeded random actions (made legal by the env's replacement rule) through one env, through
stable-baselines3's ``DummyVecEnv`` (``--envs`` copies in this process) and through
``SubprocVecEnv`` (one process per copy), in env steps per wall second over all copies.
``SubprocVecEnv`` pays a pipe round trip per step, so it gains only when the env step costs
more than that round trip and there are free cores; ``ShardedVecEnv`` (``4 x --envs`` copies
in ``--envs`` worker processes) pays one round trip per worker per step for its whole shard.

    python experiments/bench_env.py [--repeat 3] [--envs 2] [--vec-steps 20000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from policyopt.envs import AgentNetworkEnv
from policyopt.policies import MaxPressure
from policyopt.sim.compiled_loop import why_not
from policyopt.sim.network_sim import NetworkSimulator

CASES = [("rybko-stolyar", 600.0), ("fork-join", 600.0), ("criss-cross", 20000.0)]


def time_simulator(
    env: AgentNetworkEnv, seed: int, repeat: int, loop: str = "python"
) -> tuple[float, int, float]:
    """Best wall seconds, decisions and mean jobs of the policy-only run, in the Python event
    loop (the one the env drives) or the compiled one (``loop``)."""
    best, decisions, mean_jobs = float("inf"), 0, 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        sim = NetworkSimulator(
            env.net, "max-pressure", horizon=env.horizon, warmup=0.0, seed=seed, loop=loop
        ).run()
        best = min(best, time.perf_counter() - t0)
        decisions, mean_jobs = sim.decisions, sim.result().mean_jobs
    return best, decisions, mean_jobs


def time_env(env: AgentNetworkEnv) -> tuple[float, list[np.int64], float, int]:
    """Wall seconds, actions and mean jobs of a max-pressure-driven episode; its sim seed."""
    mp = MaxPressure()
    mp.bind(env.net)
    actions: list[np.int64] = []
    t0 = time.perf_counter()
    _, info = env.reset(seed=0)
    truncated = False
    while not truncated:
        j = env.engine
        action = np.int64(mp.order(j, env.sim.view)[0] if j is not None else 0)  # type: ignore[index,union-attr]
        _, _, _, truncated, info = env.step(action)
        actions.append(action)
    return time.perf_counter() - t0, actions, info["mean_jobs"], info["sim_seed"]


def time_replay(env: AgentNetworkEnv, actions: list[np.int64]) -> tuple[float, float]:
    """Wall seconds and mean jobs of an episode stepped through ``actions``."""
    t0 = time.perf_counter()
    env.reset(seed=0)
    step = env.step
    for action in actions:
        info = step(action)[4]
    return time.perf_counter() - t0, info["mean_jobs"]


def time_vectorized(
    kind: str, n_envs: int, steps: int, horizon: float = 600.0, workers: int = 2
) -> float:
    """Env steps per wall second (all copies) of ``kind`` (``single``, ``dummy``, ``subproc``,
    ``sharded`` over ``workers`` processes) on ``rybko-stolyar`` with seeded random actions;
    process start-up is not timed."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from policyopt.learn.common import make_env

    rng = np.random.default_rng(0)
    if kind == "single":
        env = AgentNetworkEnv("rybko-stolyar", horizon=horizon)
        env.reset(seed=0)
        actions = rng.integers(0, env.n_classes, size=steps)
        t0 = time.perf_counter()
        for a in actions:
            *_, truncated, _ = env.step(a)
            if truncated:
                env.reset()
        return steps / (time.perf_counter() - t0)
    from policyopt.learn.sharded_vec_env import ShardedVecEnv

    kw: dict = {}
    if kind == "sharded":
        cls: type = ShardedVecEnv
        kw = {"workers": workers}
    else:
        cls = SubprocVecEnv if kind == "subproc" else DummyVecEnv
    venv = make_vec_env(
        make_env,
        n_envs=n_envs,
        seed=0,
        vec_env_cls=cls,
        vec_env_kwargs=kw,
        env_kwargs={"target": "rybko-stolyar", "env_kwargs": {"horizon": horizon}},
    )
    venv.reset()
    K = venv.action_space.n  # type: ignore[attr-defined]
    rounds = max(1, steps // n_envs)
    actions = rng.integers(0, K, size=(rounds, n_envs))
    t0 = time.perf_counter()
    for a in actions:
        venv.step(a)  # auto-reset at truncation
    rate = rounds * n_envs / (time.perf_counter() - t0)
    venv.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (best is kept)")
    parser.add_argument("--envs", type=int, default=2, help="copies in the vectorized rows")
    parser.add_argument("--vec-steps", type=int, default=20000, help="steps per vectorized row")
    args = parser.parse_args()
    print(
        f"{'network':<15} {'horizon s':>9} {'env loop':>8} {'steps':>6} {'sim s':>6} "
        f"{'compiled s':>10} {'env py s':>8} {'env s':>6} {'replay s':>8} {'overhead':>8} "
        f"{'driven':>7} {'python env':>10} {'vs compiled':>11}  same run"
    )
    for name, horizon in CASES:
        env = AgentNetworkEnv(name, horizon=horizon)
        env_py = AgentNetworkEnv(name, horizon=horizon, loop="python")
        compiled = why_not(NetworkSimulator(env.net, "max-pressure", horizon=1.0)) is None
        best: dict[str, float] = {}
        same = True
        for _ in range(args.repeat):  # alternate, so all see the same (shared) machine
            e_s, actions, env_jobs, seed = time_env(env)
            p_s, _, py_jobs, _ = time_env(env_py)
            r_s, replay_jobs = time_replay(env, actions)
            s_s, _, sim_jobs = time_simulator(env, seed, 1)
            times = {"env": e_s, "env_py": p_s, "replay": r_s, "sim": s_s}
            same = same and env_jobs == py_jobs == replay_jobs == sim_jobs
            if compiled:
                times["jit"], _, jit_jobs = time_simulator(env, seed, 1, "compiled")
                same = same and jit_jobs == sim_jobs
            for key, value in times.items():
                best[key] = min(best.get(key, float("inf")), value)
        sim_s, replay_s = best["sim"], best["replay"]
        jit = f"{best['jit']:>10.3f}" if compiled else f"{'-':>10}"
        vs_jit = f"{replay_s / best['jit']:>10.1f}x" if compiled else f"{'-':>11}"
        print(
            f"{name:<15} {horizon:>9.0f} {env.loop:>8} {len(actions):>6d} {sim_s:>6.3f} {jit} "
            f"{best['env_py']:>8.3f} {best['env']:>6.3f} {replay_s:>8.3f} "
            f"{replay_s / sim_s:>7.2f}x {best['env'] / sim_s:>6.2f}x "
            f"{best['env_py'] / sim_s:>9.2f}x {vs_jit}  {'yes' if same else 'NO'}"
        )
    print()
    print(f"{'rybko-stolyar, random actions':<32} {'copies':>6} {'steps/s':>9} {'vs single':>9}")
    single = max(time_vectorized("single", 1, args.vec_steps) for _ in range(args.repeat))
    print(f"{'one env':<32} {1:>6d} {single:>9.0f} {1.0:>8.2f}x")
    for kind, label, n in (
        ("dummy", "DummyVecEnv", args.envs),
        ("subproc", "SubprocVecEnv", args.envs),
        ("dummy", "DummyVecEnv", 4 * args.envs),
        ("sharded", f"ShardedVecEnv, {args.envs} workers", 4 * args.envs),
    ):
        rate = max(
            time_vectorized(kind, n, args.vec_steps, workers=args.envs) for _ in range(args.repeat)
        )
        print(f"{label:<32} {n:>6d} {rate:>9.0f} {rate / single:>8.2f}x")


if __name__ == "__main__":
    main()
