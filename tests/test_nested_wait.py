"""Nested WAIT (``kv_cache.admission: nested-wait``) and the engine's hook that lets an
admission rule hold decoders back: hand-worked runs batch by batch (a request held at a
segment boundary until a second one reaches it, the guard that resumes held requests when
nothing else can run), the thresholds of the fluid model by hand, the decode queue's removal
against a plain list, invariants on random workloads (memory, tokens conserved, every request
finished, the per-stage bound), and bad input."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyopt.errors import SpecError
from policyopt.model import Scenario, build
from policyopt.model.kv_cache import KVCacheSpec
from policyopt.model.network import LLMEngine
from policyopt.model.workload import Workload
from policyopt.sim.admission import AdmissionContext, make_admission
from policyopt.sim.admission.nested_wait import (
    NestedWait,
    SegmentStats,
    nested_thresholds,
    segment_stats,
)
from policyopt.sim.decode_queue import DecodeQueue
from policyopt.sim.kv_memory import KVMemory, MemDecodeQueue
from policyopt.sim.network_sim import Job, NetworkSimulator
from policyopt.sim.run import simulate_classes
from tests.test_admission import kv_cases
from tests.test_admission import run as run_scenario
from tests.test_kv_memory import run as run_checked
from tests.test_kv_memory import shape

# ---------------------------------------------------------------------------- helpers


def nested(segments: list[int], thresholds: list[int], **kv: Any) -> dict[str, Any]:
    """A cache of 200 tokens in blocks of 1 (unless ``kv`` says otherwise) under Nested WAIT."""
    return {
        "tokens": 200,
        "block_size": 1,
        "admission": {"name": "nested-wait", "segments": segments, "thresholds": thresholds},
        **kv,
    }


def engine_with(kv: dict[str, Any], classes: tuple[int, ...] = (0,)) -> tuple[KVMemory, Any]:
    """The memory and the rule of an engine with cache ``kv`` serving ``classes``."""
    spec = KVCacheSpec(**kv)
    ctx = AdmissionContext(
        kv=spec,
        engine=LLMEngine(kv_cache=spec),
        classes=classes,
        workloads=dict.fromkeys(classes, Workload()),
        rates=lambda: dict.fromkeys(classes, 1.0),
        stream=lambda k: np.random.default_rng(k),
    )
    return KVMemory(spec), make_admission(spec.admission, ctx)


def prompt(jid: int, cls: int = 0, tokens: int = 4, output: int = 8) -> Job:
    """A waiting prompt (no blocks)."""
    return Job(jid, cls, 0.0, (jid, 0.0, 0), -1, tokens, output, tokens)


def run(*args: Any, **kwargs: Any) -> NetworkSimulator:
    """``tests.test_kv_memory.run`` with its memory checks after every batch formed, and
    these: the paused requests are resident and in no decode queue, with their tokens written
    back, and the decoders' count leaves them out."""
    form = NetworkSimulator._form_batch

    def checked(self: NetworkSimulator, eng: Any, *a: Any, **kw: Any) -> None:
        form(self, eng, *a, **kw)
        queued = {
            job for dq in eng.dec.values() for job in [*dq.alive, *(j for j, _ in dq.outside)]
        }
        for job in eng.mem.paused:
            assert job in eng.mem.resident and job not in queued
            assert job.held == job.prompt + job.dec_tokens - job.dec_left
        assert eng.n_dec == len(queued)

    NetworkSimulator._form_batch = checked  # type: ignore[method-assign]
    try:
        return run_checked(*args, check=True, **kwargs)
    finally:
        NetworkSimulator._form_batch = form  # type: ignore[method-assign]


# ---------------------------------------------------------------------------- by hand


def test_hand_example_a_request_waits_at_the_boundary() -> None:
    """Segments end at 2 and 6 decoded tokens, thresholds ``n_1 = 2``, ``n_2 = 2``; Sarathi,
    budget 512, plenty of memory. Requests (prompt, output): A (2, 6) and B (2, 2) at time 0,
    C (2, 4) during batch 2 and D (2, 1) during batch 3 (a batch takes 46.75 ms).

    1. A and B: the cache is empty and two prompts wait (``n_1``): prefilled together.
    2. A and B decode (1 token each). C arrives: one prompt waits, fewer than ``n_1``.
    3. A and B decode their 2nd token; B is done (at the boundary, but finished). D arrives.
       A has decoded 2 tokens and runs on: it is held at the boundary (1 < ``n_2``).
    4. C and D (two prompts wait) are prefilled; A stays held (something else runs).
    5. C and D decode; D is done. 6. C decodes its 2nd token, alone.
       C reaches the boundary: with A, two wait there, so both resume together.
    7. A and C decode (tokens 3). 8. A and C (tokens 4); C is done. 9-10. A, to its 6th.
    """
    sim = run(
        "sarathi",
        512,
        nested([2, 6], [2, 2]),
        [0.0, 0.0, 0.06, 0.11],
        [2, 2, 2, 2],
        [6, 2, 4, 1],
    )
    A, B, C, D = range(4)
    assert shape(sim) == [
        ([(A, 2), (B, 2)], []),
        ([], [A, B]),
        ([], [A, B]),
        ([(C, 2), (D, 2)], []),
        ([], [C, D]),
        ([], [C]),
        ([], [A, C]),
        ([], [A, C]),
        ([], [A]),
        ([], [A]),
    ]
    eng = sim.engines[0]
    assert eng.admission.label == "nested-wait(segments=[2, 6], thresholds=[2, 2])"  # type: ignore[union-attr]
    assert not eng.mem.paused and eng.mem.free == eng.mem.total  # type: ignore[union-attr]
    # a batch without A while A waits is not a lapse of the scheduler
    assert eng.stats.not_work_conserving == 0


def test_the_guard_resumes_held_requests_when_nothing_else_can_run() -> None:
    """As above with ``n_2 = 3`` and without D: A (2, 6), B (2, 2) at 0, C (2, 4) later.

    With C at 1,000 s (arrivals have stopped as far as A can tell): A reaches the boundary
    after batch 3 and nothing else runs (B is done, no prompt waits), so A resumes at once
    and runs to its end; C comes alone into an empty cache (fewer than ``n_1`` wait, but
    nothing else can run: admitted) and runs through the boundary the same way.

    With C during batch 2: C waits for a second prompt (``n_1 = 2``) until A is held and
    nothing runs; then C is admitted alone (the cache still holds A, paused, so the prompt
    guard does not apply: A resumes first, while C waits, and C enters once the cache is
    empty). Every request finishes in both cases."""
    kv = nested([2, 6], [2, 3])
    late = run("sarathi", 512, kv, [0.0, 0.0, 1000.0], [2, 2, 2], [6, 2, 4])
    A, B, C = range(3)
    assert shape(late) == [
        ([(A, 2), (B, 2)], []),
        ([], [A, B]),
        ([], [A, B]),
        *[([], [A])] * 4,
        ([(C, 2)], []),
        *[([], [C])] * 4,
    ]
    early = run("sarathi", 512, kv, [0.0, 0.0, 0.06], [2, 2, 2], [6, 2, 4])
    assert shape(early) == [
        ([(A, 2), (B, 2)], []),
        ([], [A, B]),
        ([], [A, B]),
        *[([], [A])] * 4,
        ([(C, 2)], []),
        *[([], [C])] * 4,
    ]
    for sim in (late, early):
        assert int(sim.done_class[0]) == 3
        assert not sim.engines[0].mem.paused  # type: ignore[union-attr]


def test_a_held_group_waits_for_room_and_stops_admission() -> None:
    """Segments end at 1 and 5, ``n = (2, 2)``; blocks of 1, a cache of 12 tokens. Two
    requests of 2 prompt tokens that have decoded 1 token each (3 tokens in 3 blocks, full)
    come back to decoding exactly at the boundary: both are paused at once, and with two
    there they may resume, if their next tokens (a block each) fit: beside a reserve of 5 of
    the 6 free blocks they do not, so they wait, and no prompt is admitted meanwhile (the
    requests in progress first); beside a reserve of 4 they resume together."""
    mem, rule = engine_with(nested([1, 5], [2, 2], tokens=12))
    assert isinstance(rule, NestedWait)
    held = []
    for jid in (0, 1):  # two requests of 2 + 1 tokens, paused at the boundary (decoded 1)
        job = prompt(jid, tokens=2, output=5)
        mem.admit(job)
        job.held, job.pre_left, job.dec_left = 3, 0, 4
        job.blocks += 1
        mem.allocate(1)
        held.append(job)
        assert rule.decoding(job)  # joins exactly at the boundary: paused at once
    # 6 blocks used, 6 free: both are full (3 tokens in 3 blocks) and need 1 block each
    assert rule.resume(mem, 5) == []  # 1 block beside a reserve of 5: not room for two
    q = deque([prompt(7, tokens=1, output=1)])
    assert rule.admit(mem, {0: q}, [0], 5, 512, 1 << 62) == ({0: 0}, 0)
    assert rule.resume(mem, 4) == held  # room for both: they resume together
    assert rule.admit(mem, {0: q}, [0], 6, 512, 1 << 62) == ({0: 0}, 0)  # 1 < n_1 = 2


def test_one_group_per_boundary_per_batch() -> None:
    """Segments end at 1 and 5, ``n = (1, 2)``, plenty of room: five requests reach the
    boundary in one batch; the first two resume (one group per batch, so a stage holds at
    most ``n_2``), the next two in the next batch, the fifth waits for a sixth. The groups
    left waiting have room, so prompts are still admitted meanwhile."""
    mem, rule = engine_with(nested([1, 5], [1, 2]))
    reached = []
    for jid in range(5):
        job = prompt(jid, tokens=2, output=5)
        mem.admit(job)
        job.held, job.pre_left, job.dec_left = 3, 0, 4
        job.blocks += 1
        mem.allocate(1)
        assert rule.decoding(job)
        reached.append(job)
    assert rule.resume(mem, 0) == reached[:2]
    assert rule.admit(mem, {0: deque([prompt(9)])}, [0], 2, 512, 1 << 62) == ({0: 1}, 4)
    assert rule.resume(mem, 2) == reached[2:4]
    assert rule.resume(mem, 4) == []
    assert rule.resume(mem, 4, stalled=True) == reached[4:]  # nothing else runs: it goes on


def test_admission_takes_the_oldest_group_across_classes() -> None:
    """Two classes, ``n_1 = 3``: the three oldest prompts by arrival (ids 1, 2, 4), a prefix
    of each class's queue, are shown together; with room for only two of them (each needs
    its 4 prompt tokens and one more: 15 blocks), none is (the group or nothing). A class left
    out of the policy's order is not looked at."""
    kv = nested([8, 64], [3, 1], tokens=40)
    mem, rule = engine_with(kv, classes=(0, 1))
    a = deque([prompt(1, 0), prompt(4, 0), prompt(6, 0)])
    b = deque([prompt(2, 1), prompt(5, 1)])
    mem.free = mem.total - 1  # something is resident: not an empty cache
    mem.resident[prompt(99)] = None
    assert rule.admit(mem, {0: a, 1: b}, [0, 1], 0, 512, 1 << 62) == ({0: 2, 1: 1}, 12)
    assert rule.admit(mem, {0: a, 1: b}, [0, 1], 39 - 14, 512, 1 << 62) == ({0: 0, 1: 0}, 0)
    assert rule.admit(mem, {0: a, 1: b}, [1], 0, 512, 1 << 62) == ({1: 0}, 0)  # 2 < 3
    assert rule.admit(mem, {0: a, 1: b}, [0, 1], 0, 512, 2) == ({0: 0, 1: 0}, 0)  # 2 slots


# ---------------------------------------------------------------------------- thresholds


def test_thresholds_by_hand() -> None:
    """One class at 10 requests/s, prompts of 10 tokens, outputs of 4 tokens (half) or 12
    (half); segments end at 4 and 12; a batch takes ``0.1 + 0.001 * tokens`` s.

    Segment 1 is entered at 10/s, every member decodes its 4 stages; half run on
    (``p_1 = 0.5``): segment 2 at 5/s, 8 stages each. ``n_1 = max(1, ceil(10 c))``,
    ``n_2 = floor(n_1 / 2) + 1``. c = 0: n = (1, 1): 10 prefill + 4 + 8 decode tokens,
    0.122 s >= 1/10 s; c = 0.122: n = (2, 2): 20 + 8 + 16 = 44 tokens, 0.144 s < 2/10 s: n =
    (2, 2). Memory (blocks of 1): a segment-1 member holds 10 + (11 + ... + 14) = 60 tokens
    over its stages, a segment-2 one 15 + ... + 22 = 148; one request waits at the boundary
    below ``n_2`` with 14 tokens: 2 * 60 + 2 * 148 + 14 = 430. In 429 tokens only (1, 1)
    (60 + 148 = 208) fits."""
    stats = [
        SegmentStats(10.0, 10.0, 0, 4, (1.0,) * 4, 0.5),
        SegmentStats(5.0, 10.0, 4, 12, (1.0,) * 8, 0.0),
    ]

    def seconds(x: int, m: int, kv: int) -> float:
        return 0.1 + 0.001 * (x + m)

    assert nested_thresholds(stats, seconds, 512, 1 << 62, 10_000, 1) == [2, 2]
    assert nested_thresholds(stats, seconds, 512, 1 << 62, 430, 1) == [2, 2]
    assert nested_thresholds(stats, seconds, 512, 1 << 62, 429, 1) == [1, 1]

    def slow(x: int, m: int, kv: int) -> float:
        return 0.3 + 0.001 * (x + m)

    # a slower engine: c = 0.322, n_1 = 4, n_2 = floor(2) + 1 = 3 (ceil(c 5) would give 2):
    # 40 + 16 + 24 tokens, 0.38 s < 4/10 s. With p_1 = 0.9, n_2 > 3.6: 4
    assert nested_thresholds(stats, slow, 512, 1 << 62, 10_000, 1) == [4, 3]
    drift = [SegmentStats(10.0, 10.0, 0, 4, (1.0,) * 4, 0.9), stats[1]]
    assert nested_thresholds(drift, slow, 512, 1 << 62, 10_000, 1) == [4, 4]


def test_segment_stats_of_a_workload() -> None:
    """Outputs 8 (half), 16 or 32 (a quarter each) at 300 requests/s, segments 8, 16, 32:
    entered at 300, 150 and 75 per second, half of each segment's entrants run on; every
    member of a segment decodes all its stages (nobody ends inside one)."""
    spec = KVCacheSpec(tokens=18_000, admission="nested-wait")
    wl = Workload.model_validate(
        {
            "prompt": {"kind": "uniform", "low": 16, "high": 64},
            "output": {"kind": "empirical", "values": [8, 8, 16, 32]},
            "max_prompt_len": 64,
            "max_output_len": 32,
        }
    )
    ctx = AdmissionContext(
        kv=spec,
        engine=LLMEngine(kv_cache=spec),
        classes=(0,),
        workloads={0: wl},
        rates=lambda: {0: 300.0},
        stream=lambda k: np.random.default_rng(k),
    )
    stats = segment_stats([8, 16, 32], ctx)
    assert [s.rate for s in stats] == pytest.approx([300.0, 150.0, 75.0])
    assert [s.onward for s in stats] == pytest.approx([0.5, 0.5, 0.0])
    assert [s.decode for s in stats] == pytest.approx([8.0, 8.0, 16.0])
    assert [(s.start, s.end) for s in stats] == [(0, 8), (8, 16), (16, 32)]
    assert all(s.prompt == pytest.approx(40.0) for s in stats)


def test_default_segments_and_thresholds_of_a_run() -> None:
    """The workload above on a fast engine (10 ms + 0.05 ms per token, budget 2048) with a
    cache of 18,000 tokens in blocks of 16 (1,125 blocks): WAIT's default types are 8, 16,
    32; the thresholds that keep up (21, 11, 6) need 1,401 blocks, so the largest that fit:
    n_1 = 16, n_2 = floor(8) + 1 = 9, n_3 = floor(4.5) + 1 = 5, holding 16 * 27 + 9 * 32 +
    5 * 72 + 8 * 3 + 4 * 4 = 1,120 blocks (n_1 = 17 would need 1,147)."""
    data: dict[str, Any] = {
        "engine": {
            "token_budget": 2048,
            "batch_time": {"kind": "affine", "c_ms": 10.0, "cp_ms": 0.05, "cd_ms": 0.05},
            "kv_cache": {"tokens": 18_000, "admission": "nested-wait"},
        },
        "workload": {
            "arrival": {"kind": "poisson", "rate": 300.0},
            "prompt": {"kind": "uniform", "low": 16, "high": 64},
            "output": {"kind": "empirical", "values": [8, 8, 16, 32]},
            "max_prompt_len": 64,
            "max_output_len": 32,
        },
        "run": {"horizon_s": 3, "seed": 1},
    }
    row = simulate_classes(build(Scenario, data)).engines["engine"]
    assert row["admission"] == "nested-wait(segments=[8, 16, 32], thresholds=[16, 9, 5])"
    assert row["mem_max"] <= 18_000


# ---------------------------------------------------------------------------- the decode queue


@settings(max_examples=60, deadline=None)
@given(
    cap=st.integers(1, 5),
    block=st.sampled_from([1, 2, 4]),
    ops=st.lists(st.tuples(st.sampled_from("asrp"), st.integers(0, 50)), max_size=60),
)
def test_removal_from_the_decode_queue(cap: int, block: int, ops: list[tuple[str, int]]) -> None:
    """Adds, batches serving the oldest ``m`` of the window, removals from anywhere and
    preemptions of the youngest, against a plain list: the same jobs finish, every job keeps
    its remaining tokens, the window is the oldest ``cap`` and the full-block count is right."""
    dq = MemDecodeQueue(cap, block)
    model: list[list[Any]] = []  # [job, remaining], oldest first
    jid = 0
    for op, x in ops:
        if op == "a":
            job = prompt(jid, tokens=1 + x % 7, output=1 + x % 9)
            job.held = job.prompt
            jid += 1
            dq.add(job, job.dec_tokens)
            model.append([job, job.dec_tokens])
        elif op == "s":
            m = min(1 + x % cap, len(dq.alive))
            dq.grow(m)
            done = dq.serve(m)
            for entry in model[:m]:
                entry[1] -= 1
            assert sorted(j.id for j in done) == sorted(e[0].id for e in model if e[1] == 0)
            model = [e for e in model if e[1] > 0]
        elif op == "r" and model:
            job, left = model.pop(x % len(model))
            assert dq.remove(job)[0] == left
            assert job.held == job.prompt + job.dec_tokens - left
        elif op == "p" and model:
            job, left = model.pop()
            assert dq.pop_last()[:2] == (job, left)
        assert [job for job, _ in model[:cap]] == list(dq.alive)
        assert [job for job, _ in model[cap:]] == [job for job, _ in dq.outside]
        for job, left in model:
            assert dq.remaining(job) == left
        dq.materialize()
        assert dq.need() == sum(1 for job in dq.alive if job.held % block == 0)
    with pytest.raises(KeyError):
        DecodeQueue().remove(prompt(999))


# ---------------------------------------------------------------------------- random workloads


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """Requests on one engine under Nested WAIT with small segments and thresholds."""
    n = draw(st.integers(1, 16))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.01, 0.05, 0.4]), min_size=n, max_size=n))
    prompts = draw(st.lists(st.integers(1, 24), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, 24), min_size=n, max_size=n))
    edges = sorted(set(draw(st.lists(st.integers(1, 23), max_size=3))) | {24})
    thresholds = draw(st.lists(st.integers(1, 4), min_size=len(edges), max_size=len(edges)))
    block = draw(st.sampled_from([1, 2, 4]))
    need = -(-(24 + 24) // block) * block
    return {
        "scheduler": draw(st.sampled_from(["sarathi", "orca", "vllm", "fastertransformer"])),
        "budget": draw(st.sampled_from([24, 64, 512])),
        "max_seqs": draw(st.one_of(st.none(), st.integers(1, 6))),
        "arrivals": [sum(gaps[: i + 1]) for i in range(n)],
        "prompts": prompts,
        "outputs": outputs,
        "kv_cache": nested(
            edges,
            thresholds,
            tokens=draw(st.integers(need, 4 * need)),
            block_size=block,
            watermark=draw(st.sampled_from([0.0, 0.1])),
            preemption=draw(st.sampled_from(["recompute", "swap"])),
        ),
    }


@settings(max_examples=120, deadline=None)
@given(cases())
def test_memory_is_never_exceeded_and_every_request_finishes(case: dict[str, Any]) -> None:
    """Whatever the thresholds: the cache is never exceeded, no request is held for ever
    (every one finishes once arrivals stop), each with exactly its tokens (plus those
    recomputed after a preemption), and nothing is left paused or resident."""
    args = (case["scheduler"], case["budget"], case["kv_cache"])
    reqs = (case["arrivals"], case["prompts"], case["outputs"], case["max_seqs"])
    sim = run(*args, *reqs)
    eng = sim.engines[0]
    mem = eng.mem
    assert mem is not None
    assert mem.used_max <= mem.total
    assert mem.free == mem.total and not mem.resident and not mem.swapped and not mem.paused
    n = len(case["arrivals"])
    assert int(sim.done_class[0]) == n
    assert eng.stats.tokens == sum(case["prompts"]) + sum(case["outputs"]) + mem.recomputed_tokens
    assert sum(eng.preempt_counts.values()) == n
    assert sum(k * v for k, v in eng.preempt_counts.items()) == mem.preemptions
    decoded: dict[int, int] = {}
    for b in sim.batches:  # one decode token per request per batch, never past its output
        assert len(set(b.decode)) == len(b.decode)
        for j in b.decode:
            decoded[j] = decoded.get(j, 0) + 1
    assert sorted(decoded.values()) == sorted(case["outputs"])


@settings(max_examples=60, deadline=None)
@given(cases())
def test_a_stage_never_holds_more_than_its_threshold(case: dict[str, Any]) -> None:
    """The paper's per-stage bound, where its assumptions hold (Sarathi with a budget that
    carries every group's prefill and every decoder, no request slots limit, a cache that
    never preempts): in every batch, at most ``n_k`` requests decode a given token of
    segment ``k``."""
    edges = case["kv_cache"]["admission"]["segments"]
    n = case["kv_cache"]["admission"]["thresholds"]
    kv = {**case["kv_cache"], "tokens": 10_000, "preemption": "recompute"}
    reqs = (case["arrivals"], case["prompts"], case["outputs"])
    sim = run("sarathi", 4096, kv, *reqs, None)
    assert sim.engines[0].mem.preemptions == 0  # type: ignore[union-attr]
    decoded: dict[int, int] = {}
    for b in sim.batches:
        stages: dict[int, int] = {}
        for j in b.decode:
            decoded[j] = s = decoded.get(j, 0) + 1
            stages[s] = stages.get(s, 0) + 1
        for s, count in stages.items():
            k = next(i for i, e in enumerate(edges) if s <= e)
            assert count <= n[k], (s, count, n)


@settings(max_examples=25, deadline=None)
@given(kv_cases(("nested-wait",)), st.sampled_from(["fcfs", "priority:short>long"]))
def test_random_scenarios(case: dict[str, Any], policy: str) -> None:
    """Poisson scenarios of one or two classes (a network policy's order), every scheduler,
    ``max_seqs`` or not, default segments and thresholds: the cache is never exceeded."""
    if "classes" not in case:
        policy = "fcfs"
    row = run_scenario(case, policy)["engine"]
    assert row["admission"].startswith("nested-wait(")
    assert 0 < row["mem_max"] <= row["mem_capacity"]
    assert row["batches"] > 0


def test_a_memory_bound_run() -> None:
    """12,000 tokens of cache at 8 requests/s of the default workload (memory-bound; the
    fluid thresholds are all 1 there): every request Nested WAIT admits fits, and it runs to
    the horizon with the cache never exceeded."""
    data: dict[str, Any] = {
        "engine": {"kv_cache": {"tokens": 12_000, "admission": "nested-wait"}},
        "workload": {"arrival": {"kind": "poisson", "rate": 8.0}},
        "run": {"horizon_s": 60, "seed": 1},
    }
    res = simulate_classes(build(Scenario, data))
    row = res.engines["engine"]
    assert row["admission"].startswith("nested-wait(segments=[55, 88, 141, 1024]")
    assert 0 < row["mem_max"] <= 12_000
    assert res.classes["requests"]["throughput"] > 5


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kv", "message"),
    [
        (
            {"admission": {"name": "nested-wait", "thresholds": [2]}},
            "engine.kv_cache.admission.thresholds: 1 thresholds for no segments",
        ),
        (
            {"admission": {"name": "nested-wait", "segments": [64, 2048], "thresholds": [2]}},
            "engine.kv_cache.admission.thresholds: 1 thresholds for 2 segments",
        ),
        (
            {"admission": {"name": "nested-wait", "segments": [64, 64, 2048]}},
            "engine.kv_cache.admission.segments: 64 follows 64: the edges must ascend",
        ),
        (
            {"admission": {"name": "nested-wait", "segments": [64, 512]}},
            "engine.kv_cache.admission.segments: the last edge (512 tokens) is below the "
            "longest output (1024 tokens); end the list with an edge >= 1024",
        ),
        (
            {"admission": {"name": "nested-wait", "segments": [0, 2048]}},
            "engine.kv_cache.admission.segments.0",
        ),
        (
            {
                "admission": {
                    "name": "nested-wait",
                    "segments": [64, 2048],
                    "thresholds": [1, 0],
                }
            },
            "engine.kv_cache.admission.thresholds.1",
        ),
        (
            {"admission": {"name": "nested-wait", "types": [64, 2048]}},
            "engine.kv_cache.admission.types: unknown key",
        ),
        (
            {"admission": "nested-wait:fast"},
            "engine.kv_cache.admission: admission 'nested-wait' takes no option 'fast'",
        ),
    ],
)
def test_bad_input(kv: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        build(Scenario, {"engine": {"kv_cache": {"tokens": 50_000, **kv}}})
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_no_output_lengths_needed() -> None:
    """Nested WAIT reads no predicted length: valid without ``output_lengths``."""
    spec = KVCacheSpec(tokens=50_000, admission="nested-wait")
    assert spec.output_lengths is None and spec.admission.name == "nested-wait"
