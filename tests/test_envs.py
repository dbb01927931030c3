"""The Gymnasium environments (envs/, ``docs/envs.md``).

Checked: Gymnasium's ``check_env``; an episode is a function of the seed and the actions;
action masks are never all false and illegal actions are mapped and reported; episodes end by
truncation at the horizon; the rewards sum to minus the simulator's holding cost integral; and
the environment driven by maximum pressure reproduces ``simulate_network(..., "max-pressure")``
on the same random streams (so the env is the simulator, decision for decision).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import policyopt.envs
from policyopt.envs import AgentNetworkEnv, LLMEngineEnv
from policyopt.errors import SpecError
from policyopt.model.networks_library import get_network
from policyopt.policies import MaxPressure
from policyopt.sim.network_sim import simulate_network
from policyopt.solvers.static_planning import static_plan

NETWORK_ID = "policyopt/AgentNetwork-v0"
ENGINE_ID = "policyopt/LLMEngine-v0"


@dataclass
class Episode:
    """What one episode showed: ``observations`` and ``infos`` start with reset's."""

    observations: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)  # before each step
    actions: list[int] = field(default_factory=list)  # as given to step


def run_episode(env: AgentNetworkEnv, seed: int, actions: str = "random") -> Episode:
    """One episode from ``reset(seed=seed)`` to truncation.

    ``actions``: ``random`` (legal or not, from a generator seeded with ``seed``),
    ``max-pressure`` (the first class of MaxPressure's order at the deciding engine).
    """
    rng = np.random.default_rng(seed)
    mp = MaxPressure()
    mp.bind(env.net)
    obs, info = env.reset(seed=seed)
    ep = Episode([obs], [], [info])
    while True:
        ep.masks.append(env.action_masks())
        if actions == "random":
            action = int(rng.integers(env.n_classes))
        else:
            assert env.sim is not None and env.engine is not None
            action = mp.order(env.engine, env.sim.view)[0]  # type: ignore[index]
        ep.actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        assert terminated is False
        ep.observations.append(obs)
        ep.rewards.append(float(reward))
        ep.infos.append(info)
        if truncated:
            return ep


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        (NETWORK_ID, {"network": "rybko-stolyar", "horizon": 30.0}),
        (NETWORK_ID, {"network": "criss-cross", "horizon": 100.0, "random_init": True}),
        (ENGINE_ID, {"horizon": 30.0}),
        (ENGINE_ID, {"horizon": 30.0, "action": "split", "split_levels": 3}),
    ],
)
def test_gymnasium_check_env(env_id: str, kwargs: dict[str, Any]) -> None:
    env = gymnasium.make(env_id, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.spec is not None and env.spec.id == env_id
    env.close()


def test_registration_is_idempotent_and_ids_are_versioned() -> None:
    policyopt.envs.register_envs()  # a second registration is skipped, not an error
    for env_id in policyopt.envs.ENV_IDS:
        assert env_id in gymnasium.registry
        assert env_id.startswith("policyopt/") and env_id.endswith("-v0")
    env = gymnasium.make(ENGINE_ID)
    assert isinstance(env.unwrapped, LLMEngineEnv)
    assert env.unwrapped.n_classes == 2 and env.observation_space.shape == (7,)
    assert env.unwrapped.net.topology.classes == ("chat", "long")


def test_same_seed_same_episode() -> None:
    env = gymnasium.make(NETWORK_ID, network="fork-join", horizon=20.0, random_init=True)
    a = run_episode(env.unwrapped, seed=7)
    b = run_episode(env.unwrapped, seed=7)
    other = run_episode(env.unwrapped, seed=8)
    assert len(a.observations) == len(b.observations) > 100
    for x, y in zip(a.observations, b.observations, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.rewards == b.rewards
    assert a.infos == b.infos
    assert a.infos[0]["sim_seed"] != other.infos[0]["sim_seed"]
    assert a.rewards[:50] != other.rewards[:50]


@pytest.mark.parametrize(
    ("network", "kwargs"),
    [
        ("rybko-stolyar", {"horizon": 20.0}),
        ("fork-join", {"horizon": 20.0, "random_init": True}),
        ("replicated-2", {"horizon": 10.0}),  # one class per engine: no decision at all
        ("criss-cross", {"horizon": 200.0, "skip_trivial": False}),  # epochs with no work
        ("lu-kumar", {"horizon": 200.0, "random_init": True}),
    ],
)
def test_masks_never_all_false_and_illegal_actions_are_mapped(
    network: str, kwargs: dict[str, Any]
) -> None:
    env = AgentNetworkEnv(network, **kwargs)
    ep = run_episode(env, seed=3)
    assert all(m.dtype == bool and m.shape == (env.n_classes,) and m.any() for m in ep.masks)
    for mask, action, info in zip(ep.masks, ep.actions, ep.infos[1:], strict=True):
        assert info["illegal_action"] == (not mask[action])
        # a legal action is applied as given; an illegal one becomes the first legal class
        assert info["action"] == (action if mask[action] else int(np.flatnonzero(mask)[0]))
    if network == "replicated-2":
        assert len(ep.actions) == 1 and ep.infos[0]["engine"] == -1  # no decision at all
    else:
        assert len(ep.actions) > 20
        assert any(i["illegal_action"] for i in ep.infos[1:]), "random actions hit masks"


def test_masks_mark_the_classes_with_work_at_the_deciding_engine() -> None:
    env = AgentNetworkEnv("rybko-stolyar", horizon=10.0)
    env.reset(seed=0)
    for _ in range(200):
        assert env.sim is not None and env.engine is not None
        expected = np.zeros(env.n_classes, dtype=bool)
        expected[env.sim.classes_with_work(env.engine)] = True
        np.testing.assert_array_equal(env.action_masks(), expected)
        assert expected.sum() >= 2  # trivial epochs are skipped
        *_, truncated, _ = env.step(0)
        if truncated:
            break


def test_truncation_at_the_horizon_never_termination() -> None:
    env = gymnasium.make(ENGINE_ID, horizon=15.0)
    obs, info = env.reset(seed=1)
    assert info["time"] < 15.0 and obs[6] == 1.0  # the engine decides
    steps = 0
    while True:
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert not terminated
        if truncated:
            break
        assert info["time"] < 15.0
    assert steps > 50
    assert info["time"] == 15.0 and info["engine"] == -1
    assert not obs[6:].any()  # no engine decides any more
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(0)


@pytest.mark.parametrize(
    ("network", "scale"), [("rybko-stolyar", 1.0), ("criss-cross", 0.1), ("fork-join", 1.0)]
)
def test_rewards_sum_to_minus_the_holding_cost_integral(network: str, scale: float) -> None:
    horizon = 40.0 if network != "criss-cross" else 300.0
    env = AgentNetworkEnv(network, horizon=horizon, reward_scale=scale, random_init=True)
    ep = run_episode(env, seed=11)
    rewards, infos = ep.rewards, ep.infos
    assert all(r <= 0 for r in rewards)
    res = env.result()  # warmup 0: holding_cost is the integral over [0, horizon] / horizon
    assert res.warmup == 0.0 and res.horizon == horizon
    total = -scale * res.holding_cost * horizon
    assert sum(rewards) == pytest.approx(total, rel=1e-9)
    assert infos[-1]["mean_holding_cost"] == pytest.approx(res.holding_cost, rel=1e-9)
    assert infos[-1]["mean_jobs"] == pytest.approx(res.mean_jobs, rel=1e-9)


@pytest.mark.parametrize(
    ("network", "horizon"),
    [("rybko-stolyar", 60.0), ("fork-join", 60.0), ("criss-cross", 500.0), ("pipeline-3", 60.0)],
)
def test_env_under_max_pressure_is_the_simulator_under_max_pressure(
    network: str, horizon: float
) -> None:
    env = AgentNetworkEnv(network, horizon=horizon)
    infos = run_episode(env, seed=2, actions="max-pressure").infos
    assert not any(i["illegal_action"] for i in infos[1:])
    seed = infos[0]["sim_seed"]
    ref = simulate_network(
        get_network(network), "max-pressure", horizon=horizon, warmup=0.0, seed=seed
    )
    res = env.result()
    assert res.mean_jobs == ref.mean_jobs  # common random numbers: the same run, exactly
    drop = {"policy"}
    assert {k: v for k, v in res.summary().items() if k not in drop} == {
        k: v for k, v in ref.summary().items() if k not in drop
    }


def test_observation_layout_and_bounds() -> None:
    env = AgentNetworkEnv("fork-join", horizon=10.0, random_init=True)
    K, J = env.n_classes, env.n_engines
    obs, info = env.reset(seed=4)
    assert obs.dtype == np.float32 and obs.shape == (3 * K + J,)
    assert env.observation_space.contains(obs)
    assert env.sim is not None
    waiting, serving, work = env.sim.class_state()
    np.testing.assert_allclose(obs[:K], waiting / (waiting + 10.0), rtol=1e-6)
    np.testing.assert_allclose(obs[K : 2 * K], serving / (serving + 10.0), rtol=1e-6)
    w = np.asarray(env.net.topology.work)
    np.testing.assert_allclose(obs[2 * K : 3 * K], work / (work + 10.0 * w), rtol=1e-6)
    one_hot = obs[3 * K : 3 * K + J]
    assert one_hot.sum() == 1.0 and int(np.argmax(one_hot)) == info["engine"]
    assert info["jobs"] == waiting.sum() + serving.sum() > 0  # the random initial jobs
    # a crowded network stays inside the box
    crowded = AgentNetworkEnv("rybko-stolyar", horizon=30.0, load=1.3)
    observations = run_episode(crowded, seed=0).observations
    assert all(crowded.observation_space.contains(o) for o in observations)
    assert observations[-1][:4].max() > 0.5


def test_load_is_a_fraction_of_the_lp_boundary(tmp_path: Path) -> None:
    net = get_network("fork-join")
    env = gymnasium.make(NETWORK_ID, network="fork-join", load=0.5).unwrapped
    assert static_plan(env.net).theta == pytest.approx(1 / 0.5, rel=1e-6)
    rate = 0.5 * static_plan(net).theta * net.workflows[0].rate
    assert env.net.workflows[0].rate == pytest.approx(rate, rel=1e-12)
    path = tmp_path / "two.yaml"
    path.write_text(
        "name: two\n"
        "engines: {s: {kind: station}}\n"
        "classes:\n"
        "  a: {engine: s, service: {kind: exponential, mean: 0.4}, holding_cost: 3}\n"
        "  b: {engine: s, service: {kind: exponential, mean: 0.4}}\n"
        "workflows:\n"
        "  - {name: a, arrival: {kind: poisson, rate: 1.0}, entry: a, after: {a: exit}}\n"
        "  - {name: b, arrival: {kind: poisson, rate: 1.0}, entry: b, after: {b: exit}}\n"
    )
    from_file = gymnasium.make(NETWORK_ID, network=str(path), horizon=50.0)
    assert from_file.action_space.n == 2
    assert len(run_episode(from_file.unwrapped, seed=0).rewards) > 5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="horizon"):
        AgentNetworkEnv("rybko-stolyar", horizon=0.0)
    with pytest.raises(ValueError, match="load"):
        AgentNetworkEnv("rybko-stolyar", load=-1.0)
    with pytest.raises(SpecError, match="no network named"):
        gymnasium.make(NETWORK_ID, network="no-such-network")
    with pytest.raises(RuntimeError, match="episode is over"):
        AgentNetworkEnv("rybko-stolyar").step(0)  # before reset


# ----------------------------------------------------------------------------- budget split


def test_budget_split_action_layout_and_the_native_level() -> None:
    order = LLMEngineEnv(horizon=40.0)
    split = LLMEngineEnv(horizon=40.0, action="split", split_levels=5)
    assert split.action_space.n == 10 and split.observation_space == order.observation_space
    obs_o, _ = order.reset(seed=3)
    obs_s, _ = split.reset(seed=3)
    assert split.native_level(split.engine) == 4  # Sarathi-Serve: decode first
    assert [split.decode_cap(0, level) for level in range(5)] == [0, 128, 256, 384, 512]
    steps = 0
    while True:  # the same classes at the native level: the same episode
        np.testing.assert_array_equal(obs_o, obs_s)
        mask = split.action_masks()
        assert mask.shape == (10,) and mask.any()
        np.testing.assert_array_equal(mask, np.repeat(split.class_mask(), 5))
        k = int(np.flatnonzero(order.action_masks())[-1])
        obs_o, r_o, _, done_o, _ = order.step(k)
        obs_s, r_s, _, done_s, info = split.step(split.encode_action(k))
        assert r_o == r_s and done_o == done_s and info["action"] == 5 * k + 4
        steps += 1
        if done_o:
            break
    assert steps > 50
    assert order.result().summary() == split.result().summary()


def test_budget_split_changes_the_batches() -> None:
    """Prefill first (level 0) moves prompts into decoding sooner than decode first (level
    L-1): fewer jobs wait for prefill and more decode, on average over the decisions."""

    def run(level: int) -> tuple[float, float]:
        env = LLMEngineEnv(horizon=300.0, action="split", split_levels=3)
        env.reset(seed=0)
        assert env.sim is not None
        waiting = serving = 0.0
        n = 0
        while True:
            k = int(np.flatnonzero(env.class_mask())[0])
            *_, truncated, _ = env.step(env.encode_action(k, level))
            w, srv, _ = env.sim.class_state()
            waiting, serving, n = waiting + w.sum(), serving + srv.sum(), n + 1
            if truncated:
                break
        assert sum(e.stats.not_work_conserving for e in env.sim.engines) == 0
        return waiting / n, serving / n

    prefill_first, decode_first = run(0), run(2)
    assert prefill_first[0] < decode_first[0]  # waiting for prefill
    assert prefill_first[1] > decode_first[1]  # decoding


def test_budget_split_bad_arguments() -> None:
    with pytest.raises(ValueError, match="action must be one of order, split"):
        LLMEngineEnv(action="budget")
    with pytest.raises(ValueError, match="split_levels"):
        LLMEngineEnv(action="split", split_levels=1)
    with pytest.raises(ValueError, match="mixes prefill and decode"):
        AgentNetworkEnv("classic-rybko-stolyar", action="split")  # stations only
    # an illegal split action: the first legal class at the engine's own level
    env = LLMEngineEnv(horizon=30.0, action="split", split_levels=3)
    env.reset(seed=1)
    first = int(np.argmax(env.class_mask()))
    *_, info = env.step(99)
    assert info["illegal_action"] and info["action"] == 3 * first + 2


def test_one_action_decoder_for_the_env_and_the_agent() -> None:
    """The env decodes its actions with ActionDecoder (the agent policy uses the same one):
    layout ``k * L + level``, the replacement of an illegal action, the decode caps."""
    from policyopt.envs.actions import ActionDecoder, Decision

    env = LLMEngineEnv(horizon=30.0, action="split", split_levels=3)
    env.reset(seed=2)
    assert env.sim is not None and env.engine is not None
    dec, view, j = env.decoder, env.sim.view, env.engine
    assert isinstance(dec, ActionDecoder) and dec.n_actions == env.action_space.n == 6
    both = np.array([True, True])
    for a in range(6):
        k, level = divmod(a, 3)
        assert dec.decode(a, both, view, j) == Decision(a, k, level, False)
        assert dec.encode(k, level) == a
    only_long = np.array([False, True])
    for bad in (-1, 0, 2, 6, 99):  # out of range, or class 0 without work: class 1, decode first
        assert dec.decode(bad, only_long, view, j) == Decision(5, 1, 2, True)
    np.testing.assert_array_equal(dec.action_mask(only_long), [False] * 3 + [True] * 3)
    assert [dec.decode_cap(view, j, level) for level in range(3)] == [0, 256, 512]
    assert dec.order(view, j, 1) == [1, 0] and dec.native_level(view, j) == 2
    order_only = ActionDecoder(env.net)  # no split: no cap, level 0
    assert order_only.decode_cap(view, j, 0) is None and order_only.native_level(view, j) == 0
