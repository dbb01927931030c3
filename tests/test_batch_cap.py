"""Smaller batches while an engine's queue is short (``batch-cap:TOKENS[,JOBS]:POLICY``): the
cap is never exceeded, an always-on cap is the same run as a smaller token budget, a cap at
the budget is the wrapped policy itself, capped batches count as not work-conserving, and the
``batch-cap`` tuning family searches the caps that end a step of the batch-time profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyopt.batch_cap import BatchCap, auto_caps, caps_table, smallest_caps, step_ends
from policyopt.cli import main
from policyopt.envs import AgentNetworkEnv
from policyopt.errors import SpecError
from policyopt.model.network import NetworkSpec
from policyopt.model.networks_library import resolve_network
from policyopt.policies import NetworkView, make_policy, split_policy_names
from policyopt.sim.compiled_loop import why_not
from policyopt.sim.network_sim import NetworkSimulator
from policyopt.solvers.static_planning import static_plan
from policyopt.tune import BatchCapFamily, TuneSettings, tune


def with_budget(name: str, budget: int) -> NetworkSpec:
    """Library network ``name`` with every engine's token budget set to ``budget``."""
    base = resolve_network(name)
    data = base.model_dump()
    for engine in data["engines"].values():
        engine["token_budget"] = budget
    return type(base).model_validate(data)


def nwc(result: object) -> float:
    """The largest share of batches that were not work-conserving, over the LLM engines."""
    rows = result.engines.values()  # type: ignore[attr-defined]
    return max(r["non_work_conserving_share"] for r in rows if "batches" in r)


def run(net: NetworkSpec, policy: str, horizon: float = 200.0, seed: int = 3, **kw: object):
    return NetworkSimulator(net, policy, horizon=horizon, seed=seed, **kw).run()


@pytest.mark.parametrize("name", ["rybko-stolyar", "fork-join"])
def test_an_always_on_cap_is_a_smaller_budget(name: str) -> None:
    """``batch-cap:256:c-mu`` at engines of budget 512 forms the batches of the same network
    with budget 256: the same jobs over time and the same completions, bit for bit; only the
    capped batches count as not work-conserving (they could have been larger)."""
    capped = run(resolve_network(name), "batch-cap:256:c-mu", record_batches=True)
    small = run(with_budget(name, 256), "c-mu", record_batches=True)
    a, b = capped.result(), small.result()
    assert a.mean_jobs == b.mean_jobs and a.holding_cost == b.holding_cost
    assert [(r.start, r.end, r.tokens) for r in capped.batches] == [
        (r.start, r.end, r.tokens) for r in small.batches
    ]
    assert max(r.tokens for r in capped.batches) <= 256
    assert nwc(b) == 0.0 < nwc(a)


@pytest.mark.parametrize("spec", ["batch-cap:512:c-mu", "batch-cap:600,0:c-mu"])
def test_a_cap_at_the_budget_is_the_wrapped_policy(spec: str) -> None:
    net = resolve_network("rybko-stolyar")
    a, b = run(net, spec).result(), run(net, "c-mu").result()
    assert a.mean_jobs == b.mean_jobs and a.holding_cost == b.holding_cost
    assert nwc(a) == 0.0


def test_a_threshold_no_queue_reaches_is_no_threshold() -> None:
    net = resolve_network("fork-join")
    a = run(net, "batch-cap:256,1000000:c-mu").result()
    b = run(net, "batch-cap:256:c-mu").result()
    assert a.mean_jobs == b.mean_jobs


class Logged(BatchCap):
    """A batch cap that logs, at every batch, the prompts waiting and the cap it returned."""

    def __init__(self, tokens: int, jobs: int | None) -> None:
        super().__init__(tokens, jobs, "c-mu")
        self.log: list[tuple[int, int, int | None]] = []

    def token_cap(self, engine: int, view: NetworkView) -> int | None:
        cap = super().token_cap(engine, view)
        self.log.append((engine, view.engine_jobs(engine)[0], cap))
        return cap


@settings(max_examples=12, deadline=None)
@given(
    tokens=st.integers(1, 700),
    jobs=st.one_of(st.none(), st.integers(0, 30)),
    seed=st.integers(0, 50),
    name=st.sampled_from(["rybko-stolyar", "fork-join"]),
)
def test_no_batch_exceeds_its_cap(tokens: int, jobs: int | None, seed: int, name: str) -> None:
    """Every batch holds at most the cap returned for it (the budget, 512, when none), the cap
    is returned exactly while at most ``jobs`` prompts wait, and the run conserves jobs: what
    arrived is what left plus what is still in the network."""
    policy = Logged(tokens, jobs)
    sim = run(resolve_network(name), policy, horizon=60.0, seed=seed, record_batches=True)
    assert len(policy.log) == len(sim.batches)  # one question per batch, in batch order
    for (_, waiting, cap), batch in zip(policy.log, sim.batches, strict=True):
        assert cap == (None if jobs is not None and waiting > jobs else tokens)
        assert 1 <= batch.tokens <= min(512, cap or 512)
    if tokens >= 512:
        assert nwc(sim.result()) == 0.0


def test_the_compiled_loop_leaves_a_cap_to_python() -> None:
    sim = NetworkSimulator(resolve_network("rybko-stolyar"), "batch-cap:256,20:c-mu", horizon=1)
    assert "caps the tokens of a batch" in (why_not(sim) or "")
    assert make_policy("batch-cap:256,20:c-mu").name == "batch-cap:256,20:c-mu"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("batch-cap:256", "names no policy"),
        ("batch-cap:256:", "names no policy"),
        ("batch-cap:x:c-mu", "whole numbers"),
        ("batch-cap:256,20,3:c-mu", "whole numbers"),
        ("batch-cap:0:c-mu", "a cap of 0 tokens"),
        ("batch-cap:256:nope", "unknown policy 'nope'"),
        ("batch-cap:256:batch-cap:128:c-mu", "caps batches itself"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        NetworkSimulator(resolve_network("rybko-stolyar"), spec, horizon=10.0)


def test_command_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """A station network has no batch to cap: one line naming the policy, exit code 2."""
    assert main(["simulate", "criss-cross", "--policy", "batch-cap:256:c-mu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "policy" in err[0] and "no LLM engine" in err[0]
    assert main(["tune", "criss-cross", "--family", "batch-cap", "--budget", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--family" in err[0]


def test_the_family_searches_the_ends_of_the_staircase_steps() -> None:
    """The default staircase has 128-token steps: 128, 256, 384 and 512 end one; an affine
    profile gets eighths of the budget."""
    rs = resolve_network("rybko-stolyar")
    fam = BatchCapFamily(rs)
    assert fam.levels == [128, 256, 384, 512]
    assert fam.spec(fam.start()) == "batch-cap:512,20:c-mu"
    data = rs.model_dump()
    for engine in data["engines"].values():
        engine["batch_time"] = {"kind": "affine", "c_ms": 10.0, "cp_ms": 0.2, "cd_ms": 0.3}
    affine = BatchCapFamily(type(rs).model_validate(data))
    assert affine.levels == [64, 128, 192, 256, 320, 384, 448, 512]


def test_tuning_a_cap_on_rybko_stolyar_beats_its_start() -> None:
    """A short search already finds a smaller cap than the budget that the training seeds
    prefer, the report has the start (c-mu at the full budget) on the same test seeds, and
    the tuned spec replays its validation number."""
    settings_ = TuneSettings(horizon=400.0, train=(0,), val=(10,), test=(20, 21), budget=4)
    res = tune(resolve_network("rybko-stolyar"), "batch-cap", settings_)
    assert res.start == "batch-cap:512,20:c-mu"
    costs = dict(res.trace)
    assert min(costs.values()) < costs[res.start]
    assert res.spec != res.start and res.start in res.test
    # the tuned spec is an ordinary policy name: it replays its validation number exactly
    again = run(resolve_network("rybko-stolyar"), res.spec, horizon=400.0, seed=10)
    assert again.result().holding_cost == res.validation[res.spec]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["fcfs", "c-mu", "max-pressure", "priority:A1>B1>A2>B2", "pr:3"]),
            st.lists(st.integers(1, 9), min_size=1, max_size=4).map(
                lambda w: "weighted-pressure:" + ",".join(map(str, w))
            ),
            st.tuples(st.integers(1, 512), st.integers(0, 50)).map(
                lambda t: f"batch-cap:{t[0]},{t[1]}:c-mu"
            ),
            st.floats(-5, 5, allow_nan=False).map(lambda a: f"linear:{a!r},1,-{abs(a)!r},0"),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_a_policy_list_splits_back_into_its_policies(names: list[str]) -> None:
    """Items that do not start with a letter continue the policy before them, so the
    arguments' commas survive a comma-separated list."""
    assert split_policy_names(",".join(names)) == names
    assert split_policy_names(" , ".join(names)) == names


def test_compare_takes_policies_whose_arguments_hold_commas(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policies = "c-mu,batch-cap:256,20:c-mu,weighted-pressure:1,1,1,1"
    args = ["compare", "rybko-stolyar", "--policies", policies, "--horizon", "60"]
    assert main([*args, "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "batch-cap:256,20:c-mu" in out and "weighted-pressure:1.0,1.0,1.0,1.0" in out
    assert main(["compare", "rybko-stolyar", "--policies", "c-mu,,fcfs"]) == 2


def scaled(name: str, load: float) -> NetworkSpec:
    """Library network ``name`` at ``load`` of its static planning LP's capacity boundary."""
    net = resolve_network(name)
    return net.scaled(load * static_plan(net).theta)


def test_auto_caps_keep_each_engine_under_its_load() -> None:
    """Rybko-Stolyar's engines carry 0.9 x 3,343 = 3,009 tokens/s: 256-token batches (3,114
    tokens/s) carry that at 0.966, 128-token ones (2,738) cannot; at 0.95 of the boundary only
    384 tokens do (0.973), at 0.98 no batch below the budget does. Fork-join's tools engine
    carries less (2,568 tokens/s) and gets 128."""
    assert auto_caps(resolve_network("rybko-stolyar"), 0.99) == [256, 256]
    assert auto_caps(scaled("rybko-stolyar", 0.95), 0.99) == [384, 384]
    assert auto_caps(scaled("rybko-stolyar", 0.98), 0.99) == [None, None]
    assert auto_caps(scaled("rybko-stolyar", 0.95), 0.97) == [None, None]
    assert auto_caps(resolve_network("fork-join"), 0.99) == [256, 128]
    for net in (resolve_network("rybko-stolyar"), resolve_network("fork-join")):
        for j, cap in enumerate(auto_caps(net, 0.99)):
            engine = net.engines[net.topology.engines[j]]
            assert cap is None or cap in step_ends(engine)


def test_auto_without_room_is_the_wrapped_policy_and_with_room_the_fixed_cap() -> None:
    net = scaled("rybko-stolyar", 0.98)
    a, b = run(net, "batch-cap:auto,50:c-mu").result(), run(net, "c-mu").result()
    assert a.mean_jobs == b.mean_jobs and nwc(a) == 0.0
    rs = resolve_network("rybko-stolyar")
    a, b = run(rs, "batch-cap:auto,50:c-mu").result(), run(rs, "batch-cap:256,50:c-mu").result()
    assert a.mean_jobs == b.mean_jobs


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("batch-cap:auto:c-mu", "batch-cap:auto:c-mu"),
        ("batch-cap:auto,50:c-mu", "batch-cap:auto,50:c-mu"),
        ("batch-cap:auto=0.95,50:fcfs", "batch-cap:auto=0.95,50:fcfs"),
        ("batch-cap:auto=0.99:c-mu", "batch-cap:auto:c-mu"),
    ],
)
def test_auto_names(spec: str, name: str) -> None:
    assert make_policy(spec).name == name
    assert make_policy(name).name == name


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("batch-cap:auto=1.5:c-mu", r"load in \(0, 1\]"),
        ("batch-cap:auto=0:c-mu", r"load in \(0, 1\]"),
        ("batch-cap:auto=x:c-mu", "RHO must be a number"),
        ("batch-cap:auto,x:c-mu", "whole numbers"),
        ("batch-cap:automatic:c-mu", "whole numbers"),
    ],
)
def test_bad_auto_specs(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        make_policy(spec)


@pytest.mark.parametrize(
    ("name", "base", "jobs"), [("rybko-stolyar", "c-mu", 20), ("fork-join", "max-pressure", 5)]
)
def test_the_envs_cap_action_replays_a_batch_cap_policy(name: str, base: str, jobs: int) -> None:
    """Driven with ``base``'s class first and the 256-token cap while at most ``jobs`` prompts
    wait (the full budget otherwise), the environment's ``cap`` action reproduces the
    policy-mode run of ``batch-cap:256,JOBS:BASE`` on the same seed, and the episode's
    rewards add up to minus its holding cost. (The env orders the classes after the first by
    maximum pressure: with three classes at an engine, only maximum pressure's own order is
    reproduced.)"""
    env = AgentNetworkEnv(name, horizon=150.0, action="cap")
    assert env.decoder.caps == [128, 256, 384, 512]
    assert env.action_space.n == 4 * env.n_classes  # type: ignore[attr-defined]
    ranked = make_policy(base)
    ranked.bind(env.net)
    _, info = env.reset(seed=7)
    truncated, total = False, 0.0
    while not truncated:
        j, view = env.engine, env.sim.view  # type: ignore[union-attr]
        legal = env.class_mask()
        first = next(k for k in ranked.order(j, view) if legal[k]) if j is not None else 0
        waiting = view.engine_jobs(j)[0] if j is not None else 0
        action = env.encode_action(first, 1 if waiting <= jobs else 3)
        _, reward, _, truncated, info = env.step(action)
        total += float(reward)
        assert not info["illegal_action"]
    sim = NetworkSimulator(
        env.net, f"batch-cap:256,{jobs}:{base}", horizon=150.0, warmup=0.0, seed=info["sim_seed"]
    ).run()
    assert info["mean_jobs"] == pytest.approx(sim.result().mean_jobs, rel=1e-12)
    assert total == pytest.approx(-150.0 * sim.result().holding_cost, rel=1e-9)


def test_the_envs_cap_action_needs_an_llm_engine() -> None:
    with pytest.raises(ValueError, match="action='cap' needs an LLM engine"):
        AgentNetworkEnv("criss-cross", action="cap")


def test_smallest_batch_where_none_fits() -> None:
    """At 0.98 of the boundary no batch below the budget carries the load at 0.99: the choice
    is the budget itself, at the engine's nominal load."""
    choices = [c for c in smallest_caps(scaled("rybko-stolyar", 0.98)) if c is not None]
    assert [c.cap for c in choices] == [None, None]
    assert all(c.load == pytest.approx(0.98) for c in choices)
    assert "none below the budget" in caps_table(choices)


def test_a_one_workload_scenario_takes_batch_caps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default engine and workload (one workload): ``simulate --policy batch-cap:...``
    and ``compare --policies fcfs,batch-cap:...`` run it as its one-engine, one-class network
    (``--load`` as a fraction of lambda*, which is theta* there; ``--rate`` applied first);
    ``fcfs`` is the uncapped baseline, identical to the cap at the full budget. A list with
    no cap is still refused, naming the flag."""
    args = ["simulate", "--policy", "batch-cap:auto,50:fcfs", "--load", "0.9", "--horizon", "60"]
    assert main([*args, "--json", "--out", str(tmp_path / "s")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["policy"] == "batch-cap:auto,50:fcfs" and data["mean_jobs"] > 0
    args = ["compare", "--policies", "fcfs,batch-cap:512:fcfs,batch-cap:256,50:fcfs"]
    args += ["--loads", "0.9", "--horizon", "60", "--json", "--out", str(tmp_path / "c")]
    assert main(args) == 0
    rows = {r["policy"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert rows["fcfs"]["mean_jobs"] == rows["batch-cap:512:fcfs"]["mean_jobs"]
    assert rows["batch-cap:256,50:fcfs"]["mean_jobs"] != rows["fcfs"]["mean_jobs"]
    assert main(["compare", "--policies", "fcfs,c-mu", "--horizon", "60"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--policies" in err[0] and "batch-cap" in err[0]
