"""Benchmark: Gymnasium env steps per wall second against the policy-only simulator.

For each network, the same simulated run (same horizon, same random streams, warmup 0) is
timed twice:

* **simulator**: ``NetworkSimulator(net, "max-pressure").run()``; its rate is decisions per
  wall second, a decision being a ``policy.order`` call (an engine with two classes or more at
  a decision epoch);
* **env**: ``AgentNetworkEnv`` stepped to truncation with the max-pressure action (the first
  class of ``MaxPressure().order``), so it reproduces the simulator's run exactly; its rate is
  env steps per wall second (epochs where at most one class has work are taken automatically
  and are not steps, so there are fewer steps than simulator decisions).

``overhead`` is the env's wall time over the simulator's for the same simulated run, both in
the Python event loop (the env drives that loop; the target is at most 1.5x); ``vs compiled``
the same over the compiled loop the policy-only run takes by default where it may
(``docs/compiled.md``); ``rate ratio`` is decisions/s over steps/s. Best of ``--repeat`` runs
of each, the env and simulator runs alternating so that both meet the same machine load.

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


def time_env(env: AgentNetworkEnv, repeat: int) -> tuple[float, int, float, int]:
    """Best wall seconds, steps and mean jobs of a max-pressure-driven episode; its sim seed."""
    mp = MaxPressure()
    mp.bind(env.net)
    best, steps, mean_jobs, seed = float("inf"), 0, 0.0, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        _, info = env.reset(seed=0)
        n = 0
        truncated = False
        while not truncated:
            j = env.engine
            action = mp.order(j, env.sim.view)[0] if j is not None else 0  # type: ignore[index,union-attr]
            _, _, _, truncated, info = env.step(np.int64(action))
            n += 1
        best = min(best, time.perf_counter() - t0)
        steps, mean_jobs, seed = n, info["mean_jobs"], info["sim_seed"]
    return best, steps, mean_jobs, seed


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
        f"{'network':<15} {'horizon s':>9} {'env steps':>9} {'steps/s':>9} {'decisions':>9} "
        f"{'decisions/s':>11} {'rate ratio':>10} {'overhead':>8} {'vs compiled':>11}  same run"
    )
    for name, horizon in CASES:
        env = AgentNetworkEnv(name, horizon=horizon)
        compiled = why_not(NetworkSimulator(env.net, "max-pressure", horizon=1.0)) is None
        env_s = sim_s = jit_s = float("inf")
        for _ in range(args.repeat):  # alternate, so all see the same (shared) machine
            e_s, steps, env_jobs, seed = time_env(env, 1)
            s_s, decisions, sim_jobs = time_simulator(env, seed, 1)
            env_s, sim_s = min(env_s, e_s), min(sim_s, s_s)
            if compiled:
                j_s, _, jit_jobs = time_simulator(env, seed, 1, "compiled")
                jit_s = min(jit_s, j_s)
                sim_jobs = sim_jobs if jit_jobs == sim_jobs else float("nan")
        vs_jit = f"{env_s / jit_s:>10.1f}x" if compiled else f"{'-':>11}"
        print(
            f"{name:<15} {horizon:>9.0f} {steps:>9d} {steps / env_s:>9.0f} {decisions:>9d} "
            f"{decisions / sim_s:>11.0f} {decisions / sim_s / (steps / env_s):>9.2f}x "
            f"{env_s / sim_s:>7.2f}x {vs_jit}  {'yes' if env_jobs == sim_jobs else 'NO'}"
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
