"""Admission rules of a limited KV cache (``kv_cache.admission``): each rule against a
hand-worked example of its definition, the memory bound on random workloads, MC-SF's
no-preemption guarantee with exact output lengths, predicted output lengths, the default's
results pinned, the registry, and bad input."""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyopt.errors import SpecError
from policyopt.model import Scenario, build
from policyopt.model.admission import (
    AdmissionSpec,
    BucketedLengths,
    ExactLengths,
    PredictedLengths,
)
from policyopt.model.kv_cache import KVCacheSpec
from policyopt.model.network import LLMEngine
from policyopt.model.workload import Workload
from policyopt.sim.admission import (
    ADMISSIONS,
    AdmissionContext,
    AdmissionRule,
    make_admission,
    register_admission,
    unregister_admission,
)
from policyopt.sim.admission.base import Predictor
from policyopt.sim.admission.fcfs import FCFS
from policyopt.sim.admission.mc_sf import MCSF
from policyopt.sim.admission.wait import TypeStats, Wait, fluid_thresholds
from policyopt.sim.kv_memory import KVMemory
from policyopt.sim.network_sim import Job
from policyopt.sim.run import simulate_classes

# ---------------------------------------------------------------------------- helpers


def engine_with(kv: dict[str, Any], scheduler: str = "sarathi") -> tuple[KVMemory, AdmissionRule]:
    """The memory and the admission rule of a one-class engine with cache ``kv``."""
    spec = KVCacheSpec(**kv)
    eng = LLMEngine(kv_cache=spec, scheduler=scheduler)
    ctx = AdmissionContext(
        kv=spec,
        engine=eng,
        classes=(0,),
        workloads={0: Workload()},
        rates=lambda: {0: 1.0},
        stream=lambda k: np.random.default_rng(k),
    )
    return KVMemory(spec), make_admission(spec.admission, ctx)


def waiting(*requests: tuple[int, int]) -> deque[Job]:
    """Waiting requests of class 0, ``(prompt, output)`` tokens each, in arrival order."""
    return deque(Job(i, 0, 0.0, (i, 0.0, 0), -1, p, d, p) for i, (p, d) in enumerate(requests))


def decoding(mem: KVMemory, jid: int, prompt: int, output: int, decoded: int) -> Job:
    """A resident request of ``prompt`` tokens that has decoded ``decoded`` of ``output``."""
    job = Job(jid, 0, 0.0, (jid, 0.0, 0), -1, prompt, output, prompt)
    mem.admit(job)
    job.held = prompt + decoded
    job.pre_left = 0
    grown = mem.blocks_for(job.held) - job.blocks  # the blocks its decoded tokens took
    job.blocks += grown
    mem.allocate(grown)
    job.pred = output
    return job


def run(data: dict[str, Any], policy: str = "fcfs") -> dict[str, Any]:
    """The engine row and the class rows of a scenario run as its one-engine network."""
    res = simulate_classes(build(Scenario, data), policy)
    return {"engine": res.engines["engine"], "classes": res.classes}


# ---------------------------------------------------------------------------- MC-SF


def test_mcsf_hand_example() -> None:
    """A cache of 40 tokens (blocks of 1), empty; four requests wait, (prompt, output):
    A (11, 8), B (6, 2), C (12, 4), D (4, 3), in that order.

    A request admitted now holds its prompt in its prefill batch (batch 1) and one token more
    in each later batch until its last output token: ``prompt + t - 1`` tokens in batch
    ``t = 1 .. output + 1``. MC-SF takes them by shortest output, B, D, C, A:

    * B: 6, 7, 8 tokens in batches 1-3; peak 8 <= 40: admitted.
    * D: 4, 5, 6, 7 in batches 1-4. Batch 3: 8 + 6 = 14; batch 4: 7. Admitted.
    * C: 12 .. 16 in batches 1-5. Batch 3: 8 + 6 + 14 = 28; 4: 7 + 15 = 22; 5: 16. Admitted.
    * A: 11 .. 19 in batches 1-9. Batch 3: 28 + 13 = 41 > 40: refused, and the scan stops.

    So B, D and C are shown (22 prefill tokens), moved to the front in that order. All four
    fit now (11 + 6 + 12 + 4 = 33 tokens, 37 with a token more each): ``fcfs`` shows them all
    and the cache would overflow in batch 3.
    """
    mem, rule = engine_with(
        {"tokens": 40, "block_size": 1, "admission": "mc-sf", "output_lengths": "exact"}
    )
    assert isinstance(rule, MCSF)
    q = waiting((11, 8), (6, 2), (12, 4), (4, 3))
    shown, tokens = rule.admit(mem, {0: q}, [0], 0, 512, 1 << 62)
    assert shown == {0: 3} and tokens == 22
    assert [job.id for job in q] == [1, 3, 2, 0]
    # the same decision again (the scheduler did not take them): the same answer
    assert rule.admit(mem, {0: q}, [0], 0, 512, 1 << 62) == ({0: 3}, 22)
    assert [job.id for job in q] == [1, 3, 2, 0]
    fcfs_mem, fcfs = engine_with({"tokens": 40, "block_size": 1})
    assert isinstance(fcfs, FCFS)
    assert fcfs.admit(
        fcfs_mem, {0: waiting((11, 8), (6, 2), (12, 4), (4, 3))}, [0], 0, 512, 1 << 62
    ) == ({0: 4}, 33)


def test_mcsf_stops_at_the_first_refusal() -> None:
    """As above with a fifth request E (2, 9): 2 .. 11 tokens in batches 1-10. After B, D
    and C, E alone would fit (batch 3: 28 + 4 = 32; 4: 22 + 5 = 27; 5: 16 + 6 = 22; 10: 11),
    but A (output 8) comes before it and is refused: MC-SF is greedy and stops there."""
    mem, rule = engine_with(
        {"tokens": 40, "block_size": 1, "admission": "mc-sf", "output_lengths": "exact"}
    )
    q = waiting((11, 8), (6, 2), (12, 4), (4, 3), (2, 9))
    assert rule.admit(mem, {0: q}, [0], 0, 512, 1 << 62) == ({0: 3}, 22)
    assert [job.id for job in q] == [1, 3, 2, 0, 4]


def test_mcsf_counts_the_growth_of_running_requests() -> None:
    """A decoding request R holds 30 tokens (prompt 20, 10 of 14 output tokens decoded, so 4
    left): 31, 32, 33, 34 tokens in batches 1-4. B (6, 2) would hold 6, 7, 8 in batches 1-3:
    batch 3 holds 33 + 8 = 41 > 40, so B waits, although 31 + 6 = 37 fit in batch 1 (``fcfs``
    shows it: 40 - 30 free blocks, one kept for R's growth, 9 >= 6 + 1). With blocks of 4
    tokens R holds 8 blocks (32 tokens) and B 2: batch 3 needs 9 + 2 = 11 > 10 blocks."""
    for block in (1, 4):
        kv = {"tokens": 40, "block_size": block, "admission": "mc-sf", "output_lengths": "exact"}
        mem, rule = engine_with(kv)
        decoding(mem, 99, 20, 14, 10)
        assert rule.admit(mem, {0: waiting((6, 2))}, [0], 1, 512, 1 << 62) == ({0: 0}, 0)
    fmem, fcfs = engine_with({"tokens": 40, "block_size": 1})
    decoding(fmem, 99, 20, 14, 10)
    assert fcfs.admit(fmem, {0: waiting((6, 2))}, [0], 1, 512, 1 << 62) == ({0: 1}, 6)
    # with R one token from its end (13 of 14 decoded: 34 tokens in batch 1, then gone),
    # B's 6 + 34 = 40 fit in batch 1 and it is admitted
    mem, rule = engine_with(
        {"tokens": 40, "block_size": 1, "admission": "mc-sf", "output_lengths": "exact"}
    )
    decoding(mem, 99, 20, 14, 13)
    assert rule.admit(mem, {0: waiting((6, 2))}, [0], 1, 512, 1 << 62) == ({0: 1}, 6)


def test_mcsf_keeps_every_decoder_in_the_batch() -> None:
    """Budget 16 tokens, 10 decoders running (plenty of memory): a prompt of 7 tokens would
    need 7 + 10 = 17 > 16 tokens in the next batch, so it waits and the shorter-output prompt
    of 5 tokens behind it (5 + 10 = 15) goes ahead; with 2 request slots left only 1 more
    request fits."""
    mem, rule = engine_with(
        {"tokens": 4000, "block_size": 1, "admission": "mc-sf", "output_lengths": "exact"}
    )
    for i in range(10):
        decoding(mem, 100 + i, 10, 50, 1)
    q = waiting((7, 2), (5, 3), (4, 9))
    assert rule.admit(mem, {0: q}, [0], 0, 16, 1 << 62) == ({0: 1}, 5)
    assert q[0].id == 1
    mem, rule = engine_with(
        {"tokens": 4000, "block_size": 1, "admission": "mc-sf", "output_lengths": "exact"}
    )
    for i in range(10):
        decoding(mem, 100 + i, 10, 50, 1)
    q = waiting((3, 2), (2, 3), (4, 9))
    assert rule.admit(mem, {0: q}, [0], 0, 512, 11) == ({0: 1}, 3)


# ---------------------------------------------------------------------------- WAIT


def test_wait_hand_example() -> None:
    """Types by output length: type 1 up to 4 tokens, type 2 up to 16; thresholds 2 and 2.
    Five requests wait, (prompt, output): r0 (5, 3), r1 (8, 10), r2 (5, 2), r3 (20, 12),
    r4 (5, 3). Type 1 holds r0, r2, r4 (3 >= 2): its oldest two, r0 and r2, need 6 + 6 = 12
    blocks (prompt and a token more) of the 40 free. Type 2 holds r1 and r3 (2 >= 2): they
    need 9 + 21 = 30 > 28 left, so none of type 2 this batch (a group goes together or not at
    all). Shown: r0, r2 (10 prefill tokens). With room for both groups (a cache of 50 tokens)
    r1 and r3 follow; with type 2's threshold at 3 it waits for a third request."""
    kv: dict[str, Any] = {
        "tokens": 40,
        "block_size": 1,
        "output_lengths": "exact",
        "admission": {"name": "wait", "types": [4, 16], "thresholds": [2, 2]},
    }
    mem, rule = engine_with(kv)
    assert isinstance(rule, Wait) and rule.label == "wait(types=[4, 16], thresholds=[2, 2])"
    q = waiting((5, 3), (8, 10), (5, 2), (20, 12), (5, 3))
    assert rule.admit(mem, {0: q}, [0], 0, 512, 1 << 62) == ({0: 2}, 10)
    assert [job.id for job in q] == [0, 2, 1, 3, 4]
    mem, rule = engine_with({**kv, "tokens": 50})
    q = waiting((5, 3), (8, 10), (5, 2), (20, 12), (5, 3))
    assert rule.admit(mem, {0: q}, [0], 0, 512, 1 << 62) == ({0: 4}, 38)
    assert [job.id for job in q] == [0, 2, 1, 3, 4]
    kv["admission"] = {"name": "wait", "types": [4, 16], "thresholds": [2, 3]}
    mem, rule = engine_with({**kv, "tokens": 50})
    q = waiting((5, 3), (8, 10), (5, 2), (20, 12), (5, 3))
    assert rule.admit(mem, {0: q}, [0], 0, 512, 1 << 62) == ({0: 2}, 10)


def test_fluid_thresholds_hand_example() -> None:
    """One type, 10 requests/s of 10 prompt and 10 output tokens; a batch takes
    ``0.1 + 0.001 * tokens`` s. ``n = max(1, ceil(10 c))``: c = 0 gives n = 1, whose iteration
    (10 prefill + 10 decode tokens) takes 0.12 s > 1 / 10 s; c = 0.12 gives n = 2: 0.14 s <=
    2 / 10 s, so n = 2 (the fluid equilibrium has 10 * 0.14 = 1.4 requests per stage). Its
    memory is 2 * (10 + 11 + ... + 20) = 330 tokens; in a cache of 200 only n = 1 (165)
    fits."""
    stats = [TypeStats(rate=10.0, prompt=10.0, output=10.0, longest=10)]

    def seconds(x: int, m: int, kv: int) -> float:
        return 0.1 + 0.001 * (x + m)

    assert fluid_thresholds(stats, seconds, 512, 1 << 62, 10_000, 1) == [2]
    assert fluid_thresholds(stats, seconds, 512, 1 << 62, 200, 1) == [1]
    # a second type, 2 requests/s of 10 + 40 tokens. c = 0: n = (1, 1), 20 prefill + 50
    # decode tokens, 0.17 s > 1/10 s; c = 0.17: n = (ceil(1.7), ceil(0.34)) = (2, 1), 90
    # tokens, 0.19 s <= 2/10 s and <= 1/2 s
    two = [*stats, TypeStats(rate=2.0, prompt=10.0, output=40.0, longest=64)]
    assert fluid_thresholds(two, seconds, 512, 1 << 62, 10_000, 1) == [2, 1]
    # a budget of 35 tokens splits the 70 tokens of n = (1, 1) into 2 batches of 0.135 s
    # (0.27 s); c = 0.27: n = (3, 1), 110 tokens in 4 batches of 0.1275 s (0.51 s > 3/10 s);
    # c = 0.51: n = (6, 2), 200 tokens in 6 batches (0.1 + 0.001 * round(200 / 6) each...)
    # and so on: the engine cannot carry 10 * 20 + 2 * 50 = 300 tokens/s in batches of 35
    # tokens (at most 35 / 0.135 = 259 tokens/s), so the thresholds grow until the memory of
    # 10,000 tokens binds: 165 n_1 + 1230 n_2 <= 10,000
    n = fluid_thresholds(two, seconds, 35, 1 << 62, 10_000, 1)
    assert 165 * n[0] + 1230 * n[1] <= 10_000 < 165 * (n[0] + 5) + 1230 * (n[1] + 1)


def test_wait_derives_types_and_thresholds_from_the_workload() -> None:
    """Outputs of 16 tokens (3 in 4) or 128 (1 in 4), bucketed at 16 and 128, 40 requests/s
    of 32-token prompts: types 16 and 128 at 30 and 10 requests/s. Batch time ``10 ms +
    0.1 ms/token``. c = 0: n = (1, 1), 64 prefill + 144 decode tokens, 30.8 ms <= 1/30 s and
    <= 1/10 s, so n = (1, 1).

    At 200 requests/s (150 and 50): n = (1, 1) takes 30.8 ms > 1/150 s; c = 0.0308: n = (5, 2),
    224 + 336 tokens in 2 batches, 76 ms > 5/150 s; c = 0.076: n = (12, 4), 1216 tokens in 3
    batches, 152 ms > 80 ms; c = 0.152: n = (23, 8), 2384 tokens in 5 batches, 288 ms > 153
    ms... The engine would need 150 * 48 + 50 * 160 = 15,200 tokens/s and carries at most 512
    tokens in 61.2 ms, 8,366 tokens/s: no thresholds keep up, so they grow until the memory
    binds. In a cache of 153,000 tokens (blocks of 1) ``M^pi = n_1 (32 + ... + 48) + n_2 (32 +
    ... + 160) = 680 n_1 + 12,384 n_2``: n = (31, 10) holds 144,920 tokens, (31, 11) would
    need 157,984."""
    data: dict[str, Any] = {
        "engine": {
            "batch_time": {"kind": "affine", "c_ms": 10.0, "cp_ms": 0.1, "cd_ms": 0.1},
            "kv_cache": {
                "tokens": 153_000,
                "block_size": 1,
                "admission": "wait",
                "output_lengths": {"kind": "bucketed", "edges": [16, 128]},
            },
        },
        "workload": {
            "arrival": {"kind": "poisson", "rate": 40.0},
            "prompt": {"kind": "constant", "value": 32},
            "output": {"kind": "empirical", "values": [16, 16, 16, 128]},
            "max_output_len": 128,
        },
        "run": {"horizon_s": 5, "seed": 0},
    }
    assert run(data)["engine"]["admission"] == "wait(types=[16, 128], thresholds=[1, 1])"
    data["workload"]["arrival"]["rate"] = 200.0
    assert run(data)["engine"]["admission"] == "wait(types=[16, 128], thresholds=[31, 10])"


# ---------------------------------------------------------------------------- predictions


def test_predicted_lengths() -> None:
    """Exact: the true length; bucketed: the upper edge of the bucket; predicted: within the
    relative error, rounded, at least 1, the same draws for the same seed."""
    true = np.array([1, 10, 100, 1000])
    assert ExactLengths().predict(true).tolist() == [1, 10, 100, 1000]
    bucketed = BucketedLengths(edges=[8, 64, 512, 1024])
    assert bucketed.predict(true).tolist() == [8, 64, 512, 1024]
    noisy = PredictedLengths(rel_error=0.5)
    assert noisy.predict(true, np.array([-1.0, 0.0, 0.5, 1.0])).tolist() == [1, 10, 125, 1500]

    def predictions(seed: int) -> list[int]:
        jobs = [Job(i, 0, 0.0, (i, 0.0, 0), -1, 1, 100, 1) for i in range(2000)]
        pred = Predictor(noisy, lambda k: np.random.default_rng(seed + k))
        pred.assign(0, jobs[:700])
        pred.assign(0, jobs[700:])
        return [job.pred for job in jobs]

    a = predictions(1)
    assert a == predictions(1) and a != predictions(2)
    assert min(a) == 50 and max(a) == 150
    assert abs(np.mean(a) - 100) < 2


def test_same_predictions_under_every_rule() -> None:
    """The i-th request of a class gets the i-th draw of its class's stream: MC-SF and WAIT
    see the same predicted lengths, and a run is a function of its seed."""
    data = {
        "engine": {
            "kv_cache": {
                "tokens": 20_000,
                "admission": "mc-sf",
                "output_lengths": {"kind": "predicted", "rel_error": 0.3},
            }
        },
        "workload": {"arrival": {"kind": "poisson", "rate": 6.0}},
        "run": {"horizon_s": 120, "seed": 4},
    }
    first = run(data)
    assert run(data) == first
    data["run"]["seed"] = 5  # type: ignore[index]
    assert run(data)["classes"] != first["classes"]


# ---------------------------------------------------------------------------- whole runs


def test_fcfs_default_is_unchanged() -> None:
    """``admission: fcfs`` is the default and gives the numbers the engine gave before the
    rules were registered (pinned)."""
    data: dict[str, Any] = {
        "engine": {"kv_cache": {"tokens": 6000, "block_size": 4, "watermark": 0.05}},
        "scheduler": "vllm",
        "workload": {"arrival": {"kind": "poisson", "rate": 6.0}},
        "run": {"horizon_s": 300, "seed": 2},
    }
    row = run(data)["engine"]
    data["engine"]["kv_cache"]["admission"] = "fcfs"
    assert run(data)["engine"] == row
    assert row["admission"] == "fcfs"
    # the engine's numbers before the admission rules were registered
    assert (row["preemptions"], row["recomputed_tokens"], row["batches"]) == (41, 5023, 5138)
    assert row["mem_mean"] == pytest.approx(5677.123956444449, rel=1e-12)


def test_mcsf_beats_fcfs_on_a_memory_bound_engine() -> None:
    """12,000 tokens of cache at 9 requests/s of the default workload: ``fcfs`` preempts
    and recomputes; MC-SF with exact lengths never preempts and has the shorter latency."""
    base: dict[str, Any] = {
        "engine": {"kv_cache": {"tokens": 12_000, "output_lengths": "exact"}},
        "workload": {"arrival": {"kind": "poisson", "rate": 9.0}},
        "run": {"horizon_s": 300, "seed": 1},
    }
    fcfs = run(base)
    base["engine"]["kv_cache"]["admission"] = "mc-sf"
    mcsf = run(base)
    assert fcfs["engine"]["preemptions"] > 500
    assert mcsf["engine"]["preemptions"] == 0
    assert mcsf["engine"]["mem_max"] <= 12_000
    lat = {name: r["classes"]["requests"]["latency_mean"] for name, r in (("f", fcfs), ("m", mcsf))}
    assert lat["m"] < lat["f"] / 2


SCHEDULERS = ["sarathi", "vllm", "orca", "orca:whole", "sarathi:whole", "fastertransformer"]


@st.composite
def kv_cases(draw: st.DrawFn, rules: tuple[str, ...]) -> dict[str, Any]:
    """A small random scenario with a limited KV cache (one or two classes)."""
    rule = draw(st.sampled_from(rules))
    kv: dict[str, Any] = {
        "tokens": draw(st.sampled_from([1500, 3000, 6000])),
        "block_size": draw(st.sampled_from([1, 4, 16])),
        "watermark": draw(st.sampled_from([0.0, 0.05])),
        "preemption": draw(st.sampled_from(["recompute", "swap"])),
        "admission": rule,
    }
    if rule != "fcfs" or draw(st.booleans()):
        kv["output_lengths"] = draw(
            st.sampled_from(
                [
                    "exact",
                    {"kind": "predicted", "rel_error": 0.4},
                    {"kind": "bucketed", "edges": [16, 64, 512]},
                ]
            )
        )
    engine: dict[str, Any] = {"kv_cache": kv, "token_budget": draw(st.sampled_from([256, 512]))}
    if draw(st.booleans()):
        engine["max_seqs"] = draw(st.sampled_from([8, 32]))
    workload = {
        "arrival": {"kind": "poisson", "rate": draw(st.sampled_from([2.0, 8.0, 20.0]))},
        "max_prompt_len": 256,
        "max_output_len": 512,
    }
    data: dict[str, Any] = {
        "engine": engine,
        "scheduler": draw(st.sampled_from(SCHEDULERS)),
        "run": {"horizon_s": 60, "seed": draw(st.integers(0, 1000))},
    }
    if draw(st.booleans()):
        short = {**workload, "output": {"kind": "uniform", "low": 1, "high": 40}}
        data["classes"] = {"long": workload, "short": short}
    else:
        data["workload"] = workload
    return data


@settings(max_examples=30, deadline=None)
@given(kv_cases(("fcfs", "mc-sf", "wait")))
def test_memory_never_exceeds_the_cache(case: dict[str, Any]) -> None:
    row = run(case)["engine"]
    assert 0 < row["mem_max"] <= row["mem_capacity"]
    assert row["batches"] > 0


@settings(max_examples=30, deadline=None)
@given(kv_cases(("mc-sf",)), st.sampled_from(["fcfs", "priority:short>long"]))
def test_mcsf_with_exact_lengths_never_preempts(case: dict[str, Any], policy: str) -> None:
    case["engine"]["kv_cache"]["output_lengths"] = "exact"
    if "classes" not in case:
        policy = "fcfs"
    row = run(case, policy)["engine"]
    assert row["preemptions"] == 0
    assert row["recomputed_tokens"] == 0 and row["swapped_tokens"] == 0


# ---------------------------------------------------------------------------- registry


class OneAtATimeSpec(AdmissionSpec):
    """A toy rule: ``fcfs``, but at most one new prompt per batch."""

    name: Literal["one-at-a-time"] = "one-at-a-time"


class OneAtATime(FCFS):
    def admit(self, mem, waiting, order, reserve, budget, slots):  # type: ignore[no-untyped-def]
        shown, _ = super().admit(mem, waiting, order, reserve, budget, slots)
        tokens = 0
        for k, n in shown.items():
            resident = sum(1 for job in list(waiting[k])[:n] if job.blocks)
            shown[k] = min(n, resident + 1)
            tokens += sum(job.pre_left for job in list(waiting[k])[: shown[k]])
        return shown, tokens


def test_a_rule_is_one_registry_line() -> None:
    register_admission(OneAtATimeSpec, OneAtATime)
    data = {
        "engine": {"kv_cache": {"tokens": 20_000, "admission": "one-at-a-time"}},
        "workload": {"arrival": {"kind": "poisson", "rate": 6.0}},
        "run": {"horizon_s": 60, "seed": 0},
    }
    try:
        assert "one-at-a-time" in ADMISSIONS
        row = run(data)["engine"]
        assert row["admission"] == "one-at-a-time" and 0 < row["mem_max"] <= 20_000
    finally:
        unregister_admission("one-at-a-time")
    with pytest.raises(SpecError, match="unknown admission rule 'one-at-a-time'"):
        build(Scenario, data)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kv", "message"),
    [
        (
            {"admission": "mc-sf"},
            "engine.kv_cache.output_lengths: admission 'mc-sf' needs the requests' output lengths; "
            "set kv_cache.output_lengths: exact",
        ),
        ({"admission": "wait"}, "engine.kv_cache.output_lengths: admission 'wait' needs"),
        (
            {"admission": "sjf"},
            "engine.kv_cache.admission.name: unknown admission rule 'sjf' "
            "(the registered ones: fcfs, mc-sf, wait, nested-wait)",
        ),
        (
            {"admission": {"name": "mc-sf", "horizon": 3}, "output_lengths": "exact"},
            "engine.kv_cache.admission.horizon: unknown key",
        ),
        (
            {"admission": "mc-sf:fast", "output_lengths": "exact"},
            "engine.kv_cache.admission: admission 'mc-sf' takes no option 'fast'",
        ),
        ({"admission": 3}, "engine.kv_cache.admission: an admission rule is a name or a mapping"),
        (
            {"admission": {"rule": "fcfs"}},
            "engine.kv_cache.admission.name: admission rule mapping without a name (its keys: "
            "rule); add name: one of fcfs, mc-sf, wait, nested-wait",
        ),
        (
            {"admission": {"name": "wait", "thresholds": [2]}, "output_lengths": "exact"},
            "engine.kv_cache.admission.thresholds: 1 thresholds for no types",
        ),
        (
            {"admission": {"name": "wait", "types": [64, 32]}, "output_lengths": "exact"},
            "engine.kv_cache.admission.types: 32 follows 64: the edges must ascend",
        ),
        (
            {"admission": {"name": "wait", "types": [64, 512]}, "output_lengths": "exact"},
            "engine.kv_cache.admission.types: the last edge (512 tokens) is below the longest "
            "output (1024 tokens); end the list with an edge >= 1024",
        ),
        (
            {
                "admission": {"name": "wait", "types": [64, 2048], "thresholds": [0, 1]},
                "output_lengths": "exact",
            },
            "engine.kv_cache.admission.thresholds.0",
        ),
        (
            {"output_lengths": {"kind": "predicted", "rel_error": 1.5}},
            "engine.kv_cache.output_lengths.rel_error: Input should be less than or equal to 1",
        ),
        (
            {"output_lengths": {"kind": "bucketed", "edges": [128]}},
            "engine.kv_cache.output_lengths: the last edge (128 tokens) is below the longest "
            "output (1024 tokens)",
        ),
        ({"output_lengths": "guessed"}, "engine.kv_cache.output_lengths"),
    ],
)
def test_bad_input(kv: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        build(Scenario, {"engine": {"kv_cache": {"tokens": 50_000, **kv}}})
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_bad_input_in_a_network() -> None:
    """The same checks name the engine's field in a network file."""
    from policyopt.model.network import NetworkSpec

    net = {
        "name": "one",
        "engines": {"gpu": {"kind": "llm", "kv_cache": {"tokens": 50_000, "admission": "mc-sf"}}},
        "classes": {"ask": {"engine": "gpu"}},
        "workflows": [
            {
                "name": "w",
                "arrival": {"kind": "poisson", "rate": 1.0},
                "entry": "ask",
                "after": {"ask": "exit"},
            }
        ],
    }
    with pytest.raises(SpecError, match=r"engines\.gpu\.kv_cache\.output_lengths: admission"):
        build(NetworkSpec, net)
