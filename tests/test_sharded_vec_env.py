"""The sharded vector env steps its copies exactly as one DummyVecEnv over all of them."""

from __future__ import annotations

from functools import partial

import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from policyopt.learn.common import make_env
from policyopt.learn.sharded_vec_env import ShardedVecEnv


def test_same_steps_as_dummy_vec_env() -> None:
    """Five copies of Rybko-Stolyar (short episodes, so several end and reset) in two workers
    (shards of 2 and 3) against one DummyVecEnv: the same observations, rewards, dones and
    infos for 300 steps of seeded random actions; the masks through env_method agree."""
    env_fn = partial(make_env, "rybko-stolyar", {"horizon": 3.0})
    dummy = make_vec_env(env_fn, n_envs=5, seed=3, vec_env_cls=DummyVecEnv)
    sharded = make_vec_env(
        env_fn, n_envs=5, seed=3, vec_env_cls=ShardedVecEnv, vec_env_kwargs={"workers": 2}
    )
    try:
        assert isinstance(sharded, ShardedVecEnv) and sharded.shards == [(0, 2), (2, 5)]
        np.testing.assert_array_equal(dummy.reset(), sharded.reset())
        rng = np.random.default_rng(0)
        resets = 0
        for _ in range(300):
            actions = rng.integers(0, 4, size=5)
            a = dummy.step(actions)
            b = sharded.step(actions)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
            np.testing.assert_array_equal(a[2], b[2])
            assert [i.get("time") for i in a[3]] == [i.get("time") for i in b[3]]
            resets += int(a[2].sum())
        assert resets > 0
        np.testing.assert_array_equal(
            np.stack(dummy.env_method("action_masks")), np.stack(sharded.env_method("action_masks"))
        )
        assert sharded.get_attr("horizon", indices=[1, 3]) == [3.0, 3.0]
    finally:
        dummy.close()
        sharded.close()
