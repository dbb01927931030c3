"""A limited KV cache: the memory is never exceeded, preempted requests finish with exactly
their tokens, recomputed tokens are counted, a cache too large to bind changes nothing, and
two hand-worked runs (recompute and swap) batch by batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyopt.errors import SpecError
from policyopt.model import Scenario, build
from policyopt.model.kv_cache import GPUMemory, KVCacheSpec
from policyopt.model.network import scenario_network
from policyopt.sim.engine_sim import RequestList
from policyopt.sim.network_sim import NetworkSimulator
from policyopt.sim.run import simulate, simulate_classes

SCHEDULERS = ["fastertransformer", "vllm", "orca", "orca:whole", "sarathi", "sarathi:whole"]


def run(
    scheduler: str,
    budget: int,
    kv_cache: dict[str, Any] | None,
    arrivals: list[float],
    prompts: list[int],
    outputs: list[int],
    max_seqs: int | None = None,
    check: bool = False,
) -> NetworkSimulator:
    """Run the requests to the end on one engine; with ``check``, test the memory's
    invariants after every batch formed."""
    engine: dict[str, Any] = {"token_budget": budget, "max_seqs": max_seqs}
    if kv_cache is not None:
        engine["kv_cache"] = kv_cache
    scenario = build(
        Scenario,
        {
            "engine": engine,
            "scheduler": scheduler,
            "workload": {
                "prompt": {"kind": "constant", "value": max(prompts)},
                "output": {"kind": "constant", "value": max(outputs)},
                "max_prompt_len": max(prompts),
                "max_output_len": max(outputs),
            },
        },
    )
    sim = NetworkSimulator(
        scenario_network(scenario),
        "fcfs",
        horizon=1e7,
        warmup=0.0,
        trace=True,
        record_batches=True,
        requests={"requests": RequestList(arrivals, prompts, outputs)},
    )
    if check:
        form = sim._form_batch

        def checked(eng: Any, *args: Any, **kwargs: Any) -> None:
            form(eng, *args, **kwargs)
            mem = eng.mem
            for dq in eng.dec.values():
                # the decoders' held tokens and blocks, written back from their decode
                # counts; the phase counts must name the same full decoders
                dq.materialize()
                full = sum(1 for job in dq.alive if job.held % mem.block == 0)
                assert dq.need() == full
                assert sorted(map(id, dq.fresh)) == sorted(
                    id(job) for job in dq.alive if not job.first
                )
            assert 0 <= mem.free <= mem.total
            assert sum(job.blocks for job in mem.resident) == mem.total - mem.free
            for job in mem.resident:
                assert 0 < job.held <= job.blocks * mem.block
            assert eng.kv == sum(job.held for job in mem.resident)

        sim._form_batch = checked  # type: ignore[method-assign]
    sim.run()
    return sim


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    scheduler = draw(st.sampled_from(SCHEDULERS))
    budget = draw(st.integers(4, 40))
    n = draw(st.integers(1, 20))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.01, 0.05, 0.4]), min_size=n, max_size=n))
    arrivals = [sum(gaps[: i + 1]) for i in range(n)]
    prompts = draw(st.lists(st.integers(1, budget), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, 30), min_size=n, max_size=n))
    block = draw(st.sampled_from([1, 2, 4, 16]))
    need = max(prompts) + max(outputs)  # the workload declares these longest lengths
    least = -(-need // block) * block
    tokens = draw(st.integers(least, max(least, 4 * need)))
    return {
        "scheduler": scheduler,
        "budget": budget,
        "max_seqs": draw(st.one_of(st.none(), st.integers(1, 6))),
        "arrivals": arrivals,
        "prompts": prompts,
        "outputs": outputs,
        "kv_cache": {
            "tokens": tokens,
            "block_size": block,
            "watermark": draw(st.sampled_from([0.0, 0.1])),
            "preemption": draw(st.sampled_from(["recompute", "swap"])),
        },
    }


@settings(max_examples=150, deadline=None)
@given(cases())
def test_memory_is_never_exceeded_and_tokens_are_conserved(case: dict[str, Any]) -> None:
    sim = run(
        case["scheduler"],
        case["budget"],
        case["kv_cache"],
        case["arrivals"],
        case["prompts"],
        case["outputs"],
        case["max_seqs"],
        check=True,
    )
    eng = sim.engines[0]
    mem = eng.mem
    assert mem is not None
    assert mem.used_max <= mem.total  # never more blocks than the cache has
    assert mem.free == mem.total and not mem.resident and not mem.swapped
    n = len(case["arrivals"])
    assert int(sim.done_class[0]) == n  # every request finished
    # every token processed once, plus the ones recomputed after a preemption
    total = sum(case["prompts"]) + sum(case["outputs"])
    assert eng.stats.tokens == total + mem.recomputed_tokens
    if case["kv_cache"]["preemption"] == "swap":
        assert mem.swapped_tokens % 2 == 0  # each swapped token went out and came back
    assert sum(eng.preempt_counts.values()) == n
    assert sum(k * v for k, v in eng.preempt_counts.items()) == mem.preemptions


@settings(max_examples=80, deadline=None)
@given(cases())
def test_a_cache_that_never_binds_changes_nothing(case: dict[str, Any]) -> None:
    args = (case["scheduler"], case["budget"])
    reqs = (case["arrivals"], case["prompts"], case["outputs"], case["max_seqs"])
    big = {"tokens": 10**7, "block_size": 1}
    with_cache, without = run(*args, big, *reqs), run(*args, None, *reqs)
    assert with_cache.batches == without.batches
    assert with_cache.trace == without.trace
    assert with_cache.engines[0].stats.not_work_conserving == (
        without.engines[0].stats.not_work_conserving
    )
    assert with_cache.engines[0].mem.preemptions == 0  # type: ignore[union-attr]


def shape(sim: NetworkSimulator) -> list[tuple[list[tuple[int, int]], list[int]]]:
    """Each batch's prefill chunks and decoders, jobs by arrival rank (0: A, 1: B)."""
    ids = sorted({i for b in sim.batches for i in [*(j for j, _ in b.prefill), *b.decode]})
    rank = {j: r for r, j in enumerate(ids)}
    return [
        ([(rank[j], c) for j, c in b.prefill], [rank[j] for j in b.decode]) for b in sim.batches
    ]


def test_recompute_by_hand() -> None:
    """Two requests A and B, 4 prompt and 4 output tokens each, at time 0; a cache of 10
    tokens in blocks of 1; Sarathi, budget 512.

    1. Both prompts are admitted (each needs 4 + 1 blocks: 5, then 5 of 5 left): 8 prefill
       tokens, 8 blocks held.
    2. Both decode (2 free blocks for 2 tokens): 10 held, 0 free.
    3. Both need a block, none is free: B, the most recently admitted, is preempted; its 5
       tokens are dropped (5 recomputed tokens) and it waits with 5 tokens to prefill and 3 to
       decode. A needs 1 of the 5 free; B would need 5 + 1 > 4: hidden. A decodes alone.
    4. A decodes (7 held) and 5. A decodes its last token (8) and leaves.
    6. B is admitted again: 5 prefill tokens. 7-9. B decodes its 3 tokens.
    Tokens: 8 + 2 + 3 + 5 + 3 = 21 = 16 + 5 recomputed.
    """
    sim = run(
        "sarathi", 512, {"tokens": 10, "block_size": 1}, [0.0, 0.0], [4, 4], [4, 4], check=True
    )
    assert shape(sim) == [
        ([(0, 4), (1, 4)], []),
        ([], [0, 1]),
        ([], [0]),
        ([], [0]),
        ([], [0]),
        ([(1, 5)], []),
        ([], [1]),
        ([], [1]),
        ([], [1]),
    ]
    mem = sim.engines[0].mem
    assert mem is not None
    assert (mem.preemptions, mem.recomputed_tokens, mem.used_max) == (1, 5, 10)
    assert sim.engines[0].stats.tokens == 21
    assert sim.engines[0].preempt_counts == {0: 1, 1: 1}


def test_swap_by_hand() -> None:
    """The same two requests with ``preemption: swap`` at 0.01 s per token: B's 5 tokens go
    to host memory (0.05 s added to batch 3) and come back once A has left (0.05 s added to
    batch 6), where B goes on decoding: 16 tokens, none recomputed."""
    kv = {"tokens": 10, "block_size": 1, "preemption": "swap", "swap_s_per_token": 0.01}
    sim = run("sarathi", 512, kv, [0.0, 0.0], [4, 4], [4, 4], check=True)
    assert shape(sim) == [
        ([(0, 4), (1, 4)], []),
        ([], [0, 1]),
        ([], [0]),
        ([], [0]),
        ([], [0]),
        ([], [1]),
        ([], [1]),
        ([], [1]),
    ]
    mem = sim.engines[0].mem
    assert mem is not None
    assert (mem.preemptions, mem.recomputed_tokens, mem.swapped_tokens) == (1, 0, 10)
    assert sim.engines[0].stats.tokens == 16
    plain = sim.batches[1].end - sim.batches[1].start  # a batch of 1 or 2 tokens
    for i in (2, 5):
        assert sim.batches[i].end - sim.batches[i].start == pytest.approx(plain + 0.05)


def test_vllm_recomputes_a_prompt_longer_than_the_budget_in_chunks() -> None:
    """vLLM never chunks a prompt, but a preempted request whose prompt and decoded tokens
    exceed the token budget must be prefilled again: it is, a budget at a time."""
    sim = run("vllm", 8, {"tokens": 16, "block_size": 1}, [0.0, 0.0], [6, 6], [8, 8], check=True)
    mem = sim.engines[0].mem
    assert mem is not None and mem.preemptions >= 1
    assert int(sim.done_class[0]) == 2
    assert all(b.tokens <= 8 for b in sim.batches)
    assert any(len(b.prefill) == 1 and b.prefill[0][1] == 8 for b in sim.batches)


def test_gpu_derived_size() -> None:
    """CodeLlama-34B on an 80 GiB A100 at 90%: 196,608 bytes of KV a token, 49,994 tokens,
    3,124 blocks of 16."""
    gpu = GPUMemory()
    assert gpu.kv_bytes_per_token == 48 * 8 * 128 * 2 * 2 == 196_608
    free = 80 * 2**30 * 0.9 - 33.74e9 * 2
    assert gpu.tokens() == int(free // 196_608) == 49_994
    kv = KVCacheSpec(gpu={})
    assert (kv.blocks, kv.capacity) == (3124, 49_984)


def test_memory_metrics_in_a_run() -> None:
    sc = build(
        Scenario,
        {
            "engine": {"kv_cache": {"tokens": 20_000}},
            "workload": {
                "arrival": {"kind": "poisson", "rate": 2.5},
                "output": {"kind": "lognormal", "mean": 400, "sigma": 0.7},
                "max_output_len": 2048,
            },
            "run": {"horizon_s": 200, "seed": 1},
        },
    )
    res = simulate_classes(sc)
    e = res.engines["engine"]
    assert e["mem_capacity"] == 20_000
    assert 0 < e["mem_mean"] <= e["mem_max"] <= 20_000
    assert e["kv_mean"] <= e["mem_mean"]  # whole blocks hold at least the tokens
    assert e["preemptions"] > 0 and e["recomputed_tokens"] > 0
    assert 0 < e["preempted_share"] <= 1
    mem = res.series["memory_engine"]
    assert mem.max() <= 20_000 and len(mem) == len(res.series["t"])
    with pytest.raises(SpecError, match=r"engine\.kv_cache"):
        simulate(sc)


@pytest.mark.parametrize(
    ("kv", "field", "words"),
    [
        ({"tokens": 1000}, "engine.kv_cache", "could never finish"),
        ({"tokens": 10**6, "block_size": 0}, "block_size", "greater than or equal to 1"),
        ({}, "kv_cache", "not both"),
        ({"tokens": 10**6, "gpu": {}}, "kv_cache", "not both"),
        ({"tokens": 100, "block_size": 200}, "kv_cache.block_size", "more than the whole"),
        ({"gpu": {"memory_gib": 40}}, "kv_cache.gpu", "weights"),
        ({"tokens": 10**6, "preemption": "evict"}, "preemption", "recompute"),
    ],
)
def test_bad_cache(kv: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        build(Scenario, {"engine": {"kv_cache": kv}})
    assert field in str(err.value) and words in str(err.value)


def test_env_observes_free_memory() -> None:
    """With a limited cache the environment's observation ends with the share of the cache
    free at that engine: 1 before any work, below 1 once requests hold memory."""
    from envs.agent_network import AgentNetworkEnv

    sc = build(
        Scenario,
        {
            "engine": {"kv_cache": {"tokens": 20_000}},
            "classes": {
                "chat": {"arrival": {"kind": "poisson", "rate": 2.0}},
                "docs": {
                    "arrival": {"kind": "poisson", "rate": 0.5},
                    "prompt": {"kind": "constant", "value": 400},
                },
            },
        },
    )
    env = AgentNetworkEnv(scenario_network(sc), horizon=60.0)
    K, J = 2, 1
    assert env.observation_space.shape == (3 * K + J + 1,)
    obs, _ = env.reset(seed=0)
    seen = [float(obs[-1])]
    for _ in range(50):
        obs, _, _, truncated, _ = env.step(0)
        assert env.observation_space.contains(obs)
        seen.append(float(obs[-1]))
        if truncated:
            break
    assert max(seen) <= 1.0 and min(seen) < 1.0
    sim = env.sim
    assert sim is not None and sim.engines[0].mem is not None
    assert obs[-1] == np.float32(sim.memory_free()[0])  # (the query: live in both loops)
