"""Training, warm start, the agent policy and the evaluation harness (``docs/learning.md``).

Fast by design (small networks, few thousand steps, short horizons, CPU): the whole file runs
in well under a minute on two cores. Long benchmarks live in experiments/ and are marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import yaml

import policyopt.envs  # noqa: F401  (registers the environments)
from policyopt.cli import main
from policyopt.errors import SpecError
from policyopt.learn import bc
from policyopt.learn.agent_policy import AgentPolicy
from policyopt.learn.common import DEFAULT_HYPERPARAMS, algo_class, load_hyperparams, make_env
from policyopt.learn.evaluate import evaluate
from policyopt.learn.train import TrainingInterrupted, latest_checkpoint, train
from policyopt.model.networks_library import get_network
from policyopt.policies import make_policy
from policyopt.sim.network_sim import simulate_network

ROOT = Path(__file__).resolve().parents[1]

TINY: dict[str, Any] = {
    "env": {"horizon": 30.0, "n_envs": 2},
    "ppo": {"n_steps": 128, "batch_size": 64, "n_epochs": 2},
    "maskable-ppo": {"n_steps": 128, "batch_size": 64, "n_epochs": 2},
    "a2c": {"n_steps": 8},
    "eval": {"eval_freq": 1024, "n_eval_episodes": 1},
    "checkpoint": {"save_freq": 1024},
    "bc": {"steps": 1000, "epochs": 3},
}
"""Hyperparameters small enough for the default test run."""


@pytest.fixture(scope="module")
def maskable_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A maskable-ppo model trained for 2048 steps on rybko-stolyar."""
    out = tmp_path_factory.mktemp("maskable")
    res = train("rybko-stolyar", "maskable-ppo", 2048, 0, out, TINY, progress=False)
    assert res.timesteps >= 2048 and res.model_path == out / "model.zip"
    return out


@pytest.fixture(scope="module")
def ppo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ppo model with a max-pressure warm start, 2048 steps on rybko-stolyar."""
    out = tmp_path_factory.mktemp("ppo")
    res = train(
        "rybko-stolyar", "ppo", 2048, 1, out, TINY, bc_policy="max-pressure", progress=False
    )
    assert res.bc["samples"] == 1000 and res.bc["policy"] == "max-pressure"
    return out


# ----------------------------------------------------------------------------- envs


@pytest.mark.parametrize(
    "env_id,kwargs",
    [
        ("policyopt/AgentNetwork-v0", {"network": "rybko-stolyar", "horizon": 20.0}),
        ("policyopt/AgentNetwork-v0", {"network": "fork-join", "horizon": 10.0}),
        ("policyopt/LLMEngine-v0", {"horizon": 10.0}),
    ],
)
def test_sb3_check_env(env_id: str, kwargs: dict[str, Any]) -> None:
    from stable_baselines3.common.env_checker import check_env

    env = gymnasium.make(env_id, **kwargs)
    check_env(env.unwrapped, warn=True)  # raises on any failure
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)


# ----------------------------------------------------------------------------- hyperparameters


def test_default_yaml_is_the_code_defaults() -> None:
    data = yaml.safe_load((ROOT / "experiments" / "configs" / "ppo_default.yaml").read_text())
    assert data == DEFAULT_HYPERPARAMS
    assert load_hyperparams(ROOT / "experiments" / "configs" / "ppo_default.yaml") == data


def test_hyperparams_merge_and_errors(tmp_path: Path) -> None:
    hp = load_hyperparams({"env": {"horizon": 50.0}, "ppo": {"n_steps": 64, "target_kl": 0.02}})
    assert hp["env"]["horizon"] == 50.0 and hp["env"]["n_envs"] == 4
    assert hp["ppo"]["n_steps"] == 64 and hp["ppo"]["target_kl"] == 0.02
    assert hp["ppo"]["batch_size"] == DEFAULT_HYPERPARAMS["ppo"]["batch_size"]
    with pytest.raises(SpecError, match=r"env\.horizn"):
        load_hyperparams({"env": {"horizn": 5}})
    with pytest.raises(SpecError, match="sac"):
        load_hyperparams({"sac": {}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [1, 2\n")
    with pytest.raises(SpecError, match="--config"):
        load_hyperparams(bad)


def _old_load_hyperparams(source: dict[str, Any] | None) -> dict[str, Any]:
    """The loader before the hyperparameters were validated models (kept here as the
    reference: a valid input must reach stable-baselines3 exactly as it did then)."""
    import copy

    def merge(base: dict[str, Any], over: dict[str, Any], where: str) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for key, value in over.items():
            assert key in base, f"{where}{key}"
            if isinstance(base[key], dict) and key != "policy_kwargs":
                assert isinstance(value, dict)
                if where == "" and key in ("ppo", "a2c", "maskable-ppo", "ppo-avg"):
                    out[key] = {**out[key], **value}
                else:
                    out[key] = merge(base[key], value, f"{where}{key}.")
            else:
                out[key] = value
        return out

    return (
        copy.deepcopy(DEFAULT_HYPERPARAMS)
        if source is None
        else merge(DEFAULT_HYPERPARAMS, source, "")
    )


PPO_DEFAULT = ROOT / "experiments" / "configs" / "ppo_default.yaml"

VALID_HYPERPARAMS: list[dict[str, Any]] = [
    TINY,
    {"env": {"horizon": 50.0, "load": 0.8, "action": "split"}, "ppo": {"target_kl": 0.02}},
    {"ppo": {"policy_kwargs": {"net_arch": [32]}}, "a2c": {"policy_kwargs": {}}},
    {"maskable-ppo": {"normalize_advantage": False, "clip_range_vf": 0.5, "gamma": 1.0}},
    {"a2c": {"use_rms_prop": False, "rms_prop_eps": 1e-5, "normalize_advantage": True}},
    {"eval": {"eval_freq": 0}, "checkpoint": {"save_freq": 0}, "bc": {"steps": 10}},
]


def test_validated_hyperparams_are_the_old_mapping() -> None:
    """Validation changes nothing in a valid input: the same keys, values, types and order
    as the old merge (what train() hands to stable-baselines3 and writes to config.json)."""
    yaml_data = yaml.safe_load(PPO_DEFAULT.read_text())
    cases = [
        (None, None),
        (PPO_DEFAULT, yaml_data),
        (str(PPO_DEFAULT), yaml_data),
        *((data, data) for data in VALID_HYPERPARAMS),
    ]
    for source, old_source in cases:
        new = load_hyperparams(source)
        old = _old_load_hyperparams(old_source)
        assert json.dumps(new) == json.dumps(old), source
        assert load_hyperparams(new) == new  # validating again (train() does) keeps it


def test_hyperparameter_models_check_every_algorithm() -> None:
    """Each algorithm section takes its own SB3 keywords (and only those), with bounds."""
    import inspect

    from policyopt.learn.hyperparams import A2CHyper, MaskablePPOHyper, PPOHyper, keys_of

    for algo, model in (("ppo", PPOHyper), ("a2c", A2CHyper), ("maskable-ppo", MaskablePPOHyper)):
        accepted = set(keys_of((algo,)))
        assert accepted == set(model.model_fields)
        sb3 = set(inspect.signature(algo_class(algo).__init__).parameters)
        assert accepted <= sb3, accepted - sb3  # every key reaches the constructor
        assert set(DEFAULT_HYPERPARAMS[algo]) <= accepted
    bad = [
        ({"ppo": {"learning_rate": -1}}, r"^ppo\.learning_rate: .*greater than 0"),
        ({"a2c": {"n_epochs": 3}}, r"^a2c\.n_epochs: unknown key of a2c"),
        ({"maskable-ppo": {"gae_lambda": 1.5}}, r"^maskable-ppo\.gae_lambda: "),
        ({"ppo": {"policy_kwargs": {"net_arch": [64, 0]}}}, r"^ppo\.policy_kwargs\.net_arch"),
        ({"ppo": {"device": "cuda"}}, r"^ppo\.device: is set by policyopt train"),
        ({"env": {"split_levels": 1}}, r"^env\.split_levels: "),
        ({"env": {"load": 0}}, r"^env\.load: "),
        ({"bc": {"epochs": True}}, r"^bc\.epochs: true is not a number"),
    ]
    for data, pattern in bad:
        with pytest.raises(SpecError, match=pattern):
            load_hyperparams(data)


def test_help_names_defaults_and_shipped_files(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "(default ppo)" in text and "my-hyper" not in text
    examples = text.split("examples:")[1].replace("\\\n", " ").splitlines()
    commands = [line for line in examples if line.strip().startswith("policyopt train")]
    names = [m for line in commands for m in re.findall(r"--config (\S+)", line)]
    assert names
    for name in names:
        assert (ROOT / name).is_file(), name  # every example file is in the repository
    assert main(["evaluate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "policyopt-results/evaluate-NAME" in text


def test_evaluate_writes_to_the_folder_its_help_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["evaluate", "rybko-stolyar", "--policies", "max-pressure", "--seeds", "0"]
    assert main([*argv, "--horizon", "20"]) == 0
    capsys.readouterr()
    assert (tmp_path / "policyopt-results" / "evaluate-rybko-stolyar" / "evaluate.csv").is_file()


def test_seeds_must_be_whole_numbers_from_zero(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"--seed: must be a whole number from 0"):
        train("rybko-stolyar", "ppo", 100, -1, tmp_path / "r", TINY, progress=False)
    with pytest.raises(SpecError, match=r"--seeds: a seed must be a whole number >= 0"):
        evaluate("rybko-stolyar", ["max-pressure"], seeds=[0, -1], horizon=10.0)
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- training


def test_maskable_ppo_smoke_then_evaluate(maskable_dir: Path) -> None:
    cfg = json.loads((maskable_dir / "config.json").read_text())
    assert cfg["algo"] == "maskable-ppo" and cfg["status"] == "done"
    assert cfg["network"] == "rybko-stolyar" and cfg["classes"] == ["A1", "A2", "B1", "B2"]
    assert cfg["env_kwargs"]["horizon"] == 30.0 and cfg["seed"] == 0
    assert {"policyopt", "torch", "stable_baselines3", "gymnasium", "numpy"} <= set(cfg["versions"])
    assert cfg["steps_per_second"] > 0
    assert latest_checkpoint(maskable_dir) is not None
    curve = (maskable_dir / "learning_curve.csv").read_text().splitlines()
    assert curve[0].startswith("timesteps,") and len(curve) >= 2
    ev = evaluate(
        "rybko-stolyar",
        ["max-pressure", f"maskable-ppo:{maskable_dir}"],
        seeds=[0],
        horizon=200.0,
    )
    assert [r["policy"] for r in ev.summary] == ["max-pressure", f"maskable-ppo:{maskable_dir}"]
    for r in ev.summary:
        assert np.isfinite(r["mean_jobs"]) and r["mean_jobs"] > 0
        assert r["verdict"] in ("stable", "unstable", "inconclusive")


def test_agent_policy_replays_the_env_episode(maskable_dir: Path) -> None:
    """Inside a policy-mode run the agent takes exactly the actions it takes in the env."""
    model = algo_class("maskable-ppo").load(str(maskable_dir / "model.zip"), device="cpu")
    env = gymnasium.make("policyopt/AgentNetwork-v0", network="rybko-stolyar", horizon=60.0)
    obs, info = env.reset(seed=11)
    truncated, steps = False, 0
    while not truncated:
        mask = env.unwrapped.action_masks()
        action, _ = model.predict(obs, action_masks=mask, deterministic=True)
        obs, _, _, truncated, info = env.step(action)
        steps += 1
    ref = env.unwrapped.result()
    agent = make_policy(f"maskable-ppo:{maskable_dir}")
    assert isinstance(agent, AgentPolicy)
    res = simulate_network(
        get_network("rybko-stolyar"), agent, horizon=60.0, warmup=0.0, seed=info["sim_seed"]
    )
    assert agent.calls == steps
    assert res.mean_jobs == ref.mean_jobs and res.holding_cost == ref.holding_cost


def play(model: Any, env: Any, seed: int) -> tuple[dict[str, Any], list[int]]:
    """One episode of ``env`` (reset with ``seed``) under ``model``'s deterministic actions:
    the last step's info and the actions applied."""
    obs, info = env.reset(seed=seed)
    truncated, applied = False, []
    while not truncated:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, _, truncated, info = env.step(action)
        applied.append(int(info["action"]))
    return info, applied


def test_budget_split_agent_trains_and_replays(tmp_path: Path) -> None:
    """``--action split`` on LLMEngine-v0: PPO (no mask, so illegal picks are replaced as the
    env does) with a warm start, then the agent as a policy plays the env episode exactly."""
    hp = {**TINY, "env": {**TINY["env"], "action": "split", "split_levels": 3}}
    out = tmp_path / "split"
    res = train("policyopt/LLMEngine-v0", "ppo", 1024, 0, out, hp, bc_policy="priority:chat")
    assert res.bc["samples"] == 1000
    model = algo_class("ppo").load(str(out / "model.zip"), device="cpu")
    assert model.action_space.n == 6
    env = make_env(
        "policyopt/LLMEngine-v0", {"horizon": 40.0, "action": "split", "split_levels": 3}
    )
    info, applied = play(model, env, 5)
    steps = len(applied)
    ref = env.unwrapped.result()
    agent = make_policy(f"ppo:{out}")
    assert isinstance(agent, AgentPolicy) and agent.splits and agent.split_levels == 3
    sim_net = env.unwrapped.net
    res2 = simulate_network(sim_net, agent, horizon=40.0, warmup=0.0, seed=info["sim_seed"])
    assert agent.calls == steps
    assert res2.mean_jobs == ref.mean_jobs and res2.holding_cost == ref.holding_cost
    # a checkpoint reads its training directory's config.json: the same action layout
    ckpt = sorted((out / "checkpoints").glob("model_*_steps.zip"))[0]
    assert make_policy(f"ppo:{ckpt}").split_levels == 3  # type: ignore[attr-defined]
    # a split model does not fit the order-only action count of another network
    with pytest.raises(SpecError, match="6 actions"):
        make_policy(f"ppo:{out}").bind(get_network("rybko-stolyar"))


def test_cap_agent_clones_a_batch_cap_rule_and_replays(tmp_path: Path) -> None:
    """``--action cap`` on LLMEngine-v0 (one engine, caps 128 to 512): PPO warm-started from
    ``batch-cap:256,20:c-mu``, whose cap levels the clone imitates; then the agent as a
    policy plays the env episode exactly, asking the model at the same epochs (the
    one-class epochs where a cap matters included)."""
    hp = {**TINY, "env": {**TINY["env"], "action": "cap"}}
    out = tmp_path / "cap"
    rule = "batch-cap:256,20:c-mu"
    res = train("policyopt/LLMEngine-v0", "ppo", 1024, 0, out, hp, bc_policy=rule)
    assert res.bc["samples"] == 1000 and res.bc["accuracy"] > 0.5
    model = algo_class("ppo").load(str(out / "model.zip"), device="cpu")
    assert model.action_space.n == 8  # 2 classes x 4 caps
    env = make_env("policyopt/LLMEngine-v0", {"horizon": 40.0, "action": "cap"})
    info, applied = play(model, env, 5)
    steps = len(applied)
    ref = env.unwrapped.result()
    agent = make_policy(f"ppo:{out}")
    assert isinstance(agent, AgentPolicy) and agent.caps_tokens and not agent.splits
    res2 = simulate_network(
        env.unwrapped.net, agent, horizon=40.0, warmup=0.0, seed=info["sim_seed"]
    )
    assert agent.calls == steps
    assert res2.mean_jobs == ref.mean_jobs and res2.holding_cost == ref.holding_cost
    assert any(a % 4 < 3 for a in applied)  # the clone caps batches below the budget
    with pytest.raises(SpecError, match="8 actions"):
        make_policy(f"ppo:{out}").bind(get_network("rybko-stolyar"))


ONE_CLASS_LLM = (
    "name: one-class-llm\n"
    "engines: {llm: {kind: llm}}\n"
    "classes:\n"
    "  chat:\n"
    "    engine: llm\n"
    "    prompt: {kind: constant, value: 128}\n"
    "    output: {kind: constant, value: 64}\n"
    "workflows:\n"
    "  - {name: w, arrival: {kind: poisson, rate: 15.0}, entry: chat, after: {chat: exit}}\n"
)
"""One LLM engine, one class at load 0.86: no class to choose, only the batch's cap."""


def test_cap_agent_on_a_one_class_engine_replays(tmp_path: Path) -> None:
    """At an engine with one class the simulator asks a policy no order, only the token cap:
    the agent takes the decision there, at the same epochs as in the env."""
    path = tmp_path / "one.yaml"
    path.write_text(ONE_CLASS_LLM)
    hp = {**TINY, "env": {**TINY["env"], "action": "cap", "horizon": 30.0}}
    out = tmp_path / "cap1"
    train(str(path), "ppo", 1024, 0, out, hp, bc_policy="batch-cap:256,5:c-mu")
    model = algo_class("ppo").load(str(out / "model.zip"), device="cpu")
    env = make_env(str(path), {"horizon": 30.0, "action": "cap"})
    info, applied = play(model, env, 2)
    steps = len(applied)
    agent = make_policy(f"ppo:{out}")
    net = env.unwrapped.net
    res = simulate_network(net, agent, horizon=30.0, warmup=0.0, seed=info["sim_seed"])
    assert steps > 0 and agent.calls == steps
    assert res.mean_jobs == env.unwrapped.result().mean_jobs


def test_ppo_with_warm_start(ppo_dir: Path) -> None:
    cfg = json.loads((ppo_dir / "config.json").read_text())
    assert cfg["bc_policy"] == "max-pressure" and cfg["bc"]["samples"] == 1000
    assert 0.0 <= cfg["bc"]["accuracy"] <= 1.0
    res = simulate_network(get_network("rybko-stolyar"), f"ppo:{ppo_dir}", horizon=100.0)
    assert res.policy == f"ppo:{ppo_dir}" and res.mean_jobs > 0


def test_behaviour_cloning_learns_the_heuristic() -> None:
    env = make_env("rybko-stolyar", {"horizon": 60.0})
    demos = bc.collect(env, "priority:entry", steps=1500, seed=0)
    assert demos.obs.shape == (1500, 14) and demos.masks[np.arange(1500), demos.actions].all()
    model = algo_class("ppo")("MlpPolicy", env, seed=0, device="cpu", n_steps=64)

    def accuracy() -> float:
        acts, _ = model.predict(demos.obs, deterministic=True)
        legal = demos.masks[np.arange(len(acts)), acts]
        chosen = np.where(legal, acts, demos.masks.argmax(axis=1))  # the env's replacement
        return float((chosen == demos.actions).mean())

    before = accuracy()
    fit = bc.clone(model, demos, epochs=10, batch_size=128, learning_rate=3e-3)
    after = accuracy()
    assert after > max(before, 0.9), (before, after, fit)


def test_the_warm_start_is_saved_as_a_policy(ppo_dir: Path) -> None:
    cfg = json.loads((ppo_dir / "bc" / "config.json").read_text())
    assert cfg["status"] == "behaviour cloning only" and cfg["bc"]["policy"] == "max-pressure"
    clone = AgentPolicy(ppo_dir / "bc", "ppo")
    trained = AgentPolicy(ppo_dir, "ppo")
    # the clone is the model before RL: PPO's updates changed the actor's weights
    assert any(
        not np.array_equal(a[0], b[0])
        for a, b in zip(clone.actor.layers, trained.actor.layers, strict=True)
    )
    res = simulate_network(get_network("rybko-stolyar"), clone, horizon=60.0, seed=0)
    assert clone.calls > 0 and res.mean_jobs > 0


def test_interrupt_then_resume(tmp_path: Path) -> None:
    from stable_baselines3.common.callbacks import BaseCallback

    class Interrupt(BaseCallback):
        def _on_step(self) -> bool:
            if self.model.num_timesteps >= 600:
                raise KeyboardInterrupt
            return True

    hp = {**TINY, "checkpoint": {"save_freq": 0}, "eval": {"eval_freq": 0}}
    with pytest.raises(KeyboardInterrupt):
        train(
            "rybko-stolyar", "ppo", 1024, 0, tmp_path, hp, progress=False, callbacks=[Interrupt()]
        )
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.name == "model_600_steps.zip"
    assert json.loads((tmp_path / "config.json").read_text())["status"] == "interrupted"
    assert not (tmp_path / "model.zip").exists()
    res = train("rybko-stolyar", "ppo", 1024, 0, tmp_path, hp, resume=True, progress=False)
    assert res.resumed_from == str(ckpt) and res.timesteps >= 1024
    assert (tmp_path / "model.zip").is_file()
    assert algo_class("ppo").load(str(res.model_path)).num_timesteps == res.timesteps


def test_resume_without_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="--resume"):
        train("rybko-stolyar", "ppo", 100, 0, tmp_path, TINY, resume=True, progress=False)


# ----------------------------------------------------------------------------- run directories

SMALL: dict[str, Any] = {
    **TINY,
    "eval": {"eval_freq": 256, "n_eval_episodes": 1},
    "checkpoint": {"save_freq": 256},
}
"""Evaluations and checkpoints every 256 steps (128 per env with the two envs of TINY)."""


def _curve_steps(out: Path) -> list[int]:
    lines = (out / "learning_curve.csv").read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines]


def _status(out: Path) -> str:
    return json.loads((out / "config.json").read_text())["status"]


def test_fresh_run_into_an_old_directory_is_refused_then_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    train("rybko-stolyar", "ppo", 768, 0, out, SMALL, progress=False)
    assert latest_checkpoint(out).name == "model_768_steps.zip"  # type: ignore[union-attr]
    (out / "notes.txt").write_text("mine")
    model_bytes = (out / "model.zip").read_bytes()
    with pytest.raises(SpecError, match=r"--out.*already holds a training run.*--overwrite"):
        train("rybko-stolyar", "ppo", 256, 1, out, SMALL, progress=False)
    assert (out / "model.zip").read_bytes() == model_bytes and _status(out) == "done"
    argv = ["train", "rybko-stolyar", "--timesteps", "256", "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "--out" in line and "--resume" in line and "--overwrite" in line
    # --overwrite deletes the old run's files (not the others) and starts afresh
    res = train("rybko-stolyar", "ppo", 256, 1, out, SMALL, progress=False, overwrite=True)
    assert res.resumed_from is None and res.timesteps == 256
    assert latest_checkpoint(out).name == "model_256_steps.zip"  # type: ignore[union-attr]
    assert _curve_steps(out) == [256]  # none of the old run's rows
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    with pytest.raises(SpecError, match="--overwrite"):
        train("rybko-stolyar", "ppo", 256, 1, out, SMALL, resume=True, overwrite=True)
    # a file as --out
    with pytest.raises(SpecError, match=r"--out.*is a file"):
        train("rybko-stolyar", "ppo", 256, 1, out / "notes.txt", SMALL, progress=False)


def test_resume_of_a_finished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    train("rybko-stolyar", "ppo", 512, 0, out, SMALL, progress=False)
    (out / "checkpoints" / "model_512_steps.zip").unlink()  # the latest checkpoint is older
    model_bytes = (out / "model.zip").read_bytes()
    argv = ["train", "rybko-stolyar", "--timesteps", "512", "--out", str(out)]
    assert main([*argv, "--resume", "--no-progress"]) == 2
    line = _error_line(capsys)
    assert "finished run of 512 steps" in line and "--timesteps" in line
    assert (out / "model.zip").read_bytes() == model_bytes and _status(out) == "done"
    # more steps: it continues from the final model, not from the older checkpoint
    argv = ["train", "rybko-stolyar", "--timesteps", "1024", "--out", str(out), "--resume"]
    assert main([*argv, "--no-progress", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["resumed_from"] == str(out / "model.zip") and doc["timesteps"] >= 1024
    assert doc["steps_per_second"] > 0
    assert algo_class("ppo").load(str(out / "model.zip")).num_timesteps == doc["timesteps"]
    assert _curve_steps(out)[:2] == [256, 512] and max(_curve_steps(out)) > 512
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["status"] == "done" and cfg["resumed_from"] == str(out / "model.zip")


def test_ctrl_c_during_behaviour_cloning_saves_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(bc, "clone", interrupted)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as info:
        train("rybko-stolyar", "ppo", 512, 0, out, SMALL, bc_policy="max-pressure")
    assert info.value.checkpoint is None and info.value.phase == "behaviour cloning"
    assert latest_checkpoint(out) is None and not (out / "model.zip").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["status"] == "interrupted" and cfg["interrupted_during"] == "behaviour cloning"
    argv = ["train", "rybko-stolyar", "--timesteps", "512", "--out", str(out), "--no-progress"]
    assert main([*argv, "--bc", "max-pressure", "--overwrite"]) == 130
    err = capsys.readouterr().err
    assert "no checkpoint saved" in err and "saved the checkpoint" not in err
    assert "--overwrite" in err
    assert main([*argv, "--resume"]) == 2  # nothing to resume, and it says so
    assert "no checkpoint" in _error_line(capsys)


def test_evaluations_are_kept_across_an_interruption(tmp_path: Path) -> None:
    from stable_baselines3.common.callbacks import BaseCallback

    class Interrupt(BaseCallback):
        def _on_step(self) -> bool:
            if self.model.num_timesteps >= 640:
                raise KeyboardInterrupt
            return True

    hp = {**SMALL, "checkpoint": {"save_freq": 0}}
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as info:
        train("rybko-stolyar", "ppo", 1536, 0, out, hp, progress=False, callbacks=[Interrupt()])
    assert info.value.checkpoint == out / "checkpoints" / "model_640_steps.zip"
    assert info.value.checkpoint.is_file()
    before = (out / "learning_curve.csv").read_text().splitlines()
    assert _curve_steps(out) == [256, 512]
    assert list(np.load(out / "eval" / "evaluations.npz")["timesteps"]) == [256, 512]
    res = train("rybko-stolyar", "ppo", 1536, 0, out, hp, resume=True, progress=False)
    assert res.timesteps >= 1536 and _status(out) == "done"
    after = (out / "learning_curve.csv").read_text().splitlines()
    assert after[: len(before)] == before and len(after) > len(before)
    saved = np.load(out / "eval" / "evaluations.npz")["timesteps"]
    assert list(saved[:2]) == [256, 512] and saved[-1] > 640


def test_a_failed_run_is_marked_failed(tmp_path: Path) -> None:
    from stable_baselines3.common.callbacks import BaseCallback

    class Boom(BaseCallback):
        def _on_step(self) -> bool:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        train("rybko-stolyar", "ppo", 512, 0, tmp_path, SMALL, progress=False, callbacks=[Boom()])
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["status"] == "failed" and cfg["error"] == "RuntimeError: disk full"


# ----------------------------------------------------------------------------- threads, progress


def test_torch_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from policyopt.learn.common import default_threads, set_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert default_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert default_threads() == 1
    before = torch.get_num_threads()
    try:
        res = train("rybko-stolyar", "ppo", 256, 0, tmp_path, SMALL, progress=False, threads=1)
        assert res.threads == 1 and torch.get_num_threads() == 1
        assert json.loads((tmp_path / "config.json").read_text())["threads"] == 1
        with pytest.raises(SpecError, match="--threads"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_cli_threads_bad_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "rybko-stolyar", "--timesteps", "10", "--threads", "0"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert "--threads" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_progress_lines_without_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """stderr is captured here (not a terminal): one line per ``progress_every`` seconds."""
    hp = {**SMALL, "bc": {"steps": 300, "epochs": 1}}
    train("rybko-stolyar", "ppo", 512, 0, tmp_path, hp, bc_policy="fcfs", progress_every=0.0)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "bc: collecting 300 samples of fcfs"
    assert any(line.startswith("bc: accuracy ") for line in err)
    lines = [line for line in err if line.startswith("train: ")]
    assert len(lines) >= 3 and "ETA" in lines[1] and "steps/s" in lines[1]
    assert "last evaluation at 512 steps:" in lines[-1] and "done in" in lines[-1]
    assert not any("None" in line for line in err)


# ----------------------------------------------------------------------------- evaluate Ctrl-C


def test_cli_evaluate_ctrl_c_keeps_the_finished_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import policyopt.learn.evaluate as evaluate_mod
    from policyopt.sim.network_sim import NetworkSimulator

    class Sim(NetworkSimulator):
        def run(self, progress=None, keep_jobs=True):  # type: ignore[no-untyped-def]
            if self.policy_name == "priority:exit" and self.seed == 1:
                raise KeyboardInterrupt
            return super().run(progress, keep_jobs)

    monkeypatch.setattr(evaluate_mod, "NetworkSimulator", Sim)
    argv = ["evaluate", "criss-cross", "--policies", "max-pressure,priority:exit"]
    argv += ["--seeds", "0,1", "--horizon", "40", "--out", str(tmp_path)]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted after 3 of 4 runs" in err
    doc = json.loads((tmp_path / "evaluate.json").read_text())
    assert doc["complete"] is False
    assert [(r["policy"], r["seed"]) for r in doc["runs"]] == [
        ("max-pressure", 0),
        ("max-pressure", 1),
        ("priority:exit", 0),
    ]
    assert len((tmp_path / "evaluate.csv").read_text().splitlines()) == 4


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_is_reproducible(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"loads": [0.9], "seeds": [0, 1], "horizon": 300.0}
    a = evaluate("criss-cross", ["max-pressure", "priority:exit"], out=tmp_path / "a", **kw)
    b = evaluate("criss-cross", ["max-pressure", "priority:exit"], out=tmp_path / "b", **kw)
    assert a.to_dict() == b.to_dict()
    assert (tmp_path / "a" / "evaluate.json").read_text() == (
        tmp_path / "b" / "evaluate.json"
    ).read_text()
    for name in ("evaluate.csv", "summary.csv", "evaluate.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    assert len(a.runs) == 4 and len(a.summary) == 2
    # common random numbers: a seed gives both policies the same arrivals, so seeds differ
    assert a.runs[0]["mean_jobs"] != a.runs[1]["mean_jobs"]
    row = a.summary[0]
    assert row["mean_jobs_low"] <= row["mean_jobs"] <= row["mean_jobs_high"]
    assert "holding cost/s" in a.table()


# ----------------------------------------------------------------------------- bad input


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "argv,field",
    [
        (["train", "rybko-stolyar", "--algo", "dqn", "--timesteps", "10"], "--algo"),
        (["train", "rybko-stolyar", "--timesteps", "0"], "--timesteps"),
        (["train", "rybko-stolyar", "--timesteps", "-5"], "--timesteps"),
        (["train", "rybko-stolyar", "--timesteps", "ten"], "--timesteps"),
        (["train", "rybko-stolyar", "--timesteps", "10", "--horizon", "0"], "--horizon"),
        (["train", "rybko-stolyar", "--timesteps", "10", "--resume"], "--resume"),
        (["train", "no-such-net", "--timesteps", "10"], "no-such-net"),
        (
            ["train", "classic-rybko-stolyar", "--timesteps", "10", "--action", "split"],
            "mixes prefill and decode",
        ),
        (["evaluate", "rybko-stolyar", "--horizon", "-1"], "--horizon"),
        (["evaluate", "rybko-stolyar", "--seeds", "0,,1"], "--seeds"),
        (["evaluate", "rybko-stolyar", "--policies", "ppo:/no/such/dir"], "no model directory"),
    ],
)
def test_cli_bad_input(
    argv: list[str], field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("policyopt: error:") and field in line


def test_cli_bad_models(
    maskable_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.zip").write_bytes(b"not a zip")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (f"ppo:{corrupt}", "cannot load"),
        (f"ppo:{empty}", "has no model.zip"),
        (f"ppo:{maskable_dir}", "maskable-ppo model"),
    ]
    for spec, words in cases:
        assert main(["evaluate", "rybko-stolyar", "--policies", spec, "--horizon", "10"]) == 2
        assert words in _error_line(capsys)
    # a model trained for rybko-stolyar on another network: shapes differ
    argv = ["simulate", "fork-join", "--policy", f"maskable-ppo:{maskable_dir}"]
    assert main([*argv, "--horizon", "10"]) == 2
    line = _error_line(capsys)
    assert "observation size 14" in line and "fork-join" in line


def test_cli_train_and_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "hyper.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "eval": {"eval_freq": 0}}))
    out = tmp_path / "a2c"
    argv = ["train", "rybko-stolyar", "--algo", "a2c", "--timesteps", "256", "--seed", "3"]
    assert main([*argv, "--out", str(out), "--config", str(cfg), "--no-progress", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["algo"] == "a2c" and doc["timesteps"] >= 256 and (out / "model.zip").is_file()
    argv = ["evaluate", "rybko-stolyar", "--policies", f"max-pressure,a2c:{out}"]
    argv += ["--seeds", "0", "--horizon", "50", "--out", str(tmp_path / "ev"), "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in doc["summary"]] == ["max-pressure", f"a2c:{out}"]
    assert (tmp_path / "ev" / "evaluate.png").is_file()


def test_cli_subprocess_bad_timesteps(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "policyopt.cli", "train", "rybko-stolyar"]
    proc = subprocess.run(
        [*cmd, "--timesteps", "0", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "policyopt: error: --timesteps: must be > 0, got 0"


def test_import_stays_light() -> None:
    code = "import sys, policyopt, policyopt.cli; assert 'torch' not in sys.modules"
    code += "; assert 'stable_baselines3' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
