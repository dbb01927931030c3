"""Invariants of the simulator on random runs, and work conservation on random states."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from policyopt.model import EngineSpec, Scenario, scheduler_spec
from policyopt.model.workload import RequestStreams
from policyopt.sim import simulate
from policyopt.sim.batching import largest_batch, not_work_conserving
from policyopt.sim.engine_sim import EngineSimulator, RequestList
from tests.helpers import run_requests, tokens_per_request

SCHEDULERS = ["fastertransformer", "vllm", "orca", "orca:whole", "sarathi", "sarathi:whole"]


def random_run(
    scheduler: str, seed: int, max_seqs: int | None, coalesce: bool = True, block: int = 97
):
    wl = {
        "arrival": {"kind": "poisson", "rate": 9.0},
        "prompt": {"kind": "uniform", "low": 1, "high": 200},
        "output": {"kind": "geometric", "mean": 40},
        "max_prompt_len": 200,
        "max_output_len": 400,
    }
    sc = Scenario(
        engine={"token_budget": 256, "max_seqs": max_seqs},
        scheduler=scheduler,
        workload=wl,
        run={"horizon_s": 60, "seed": seed, "warmup_s": 0},
    )
    sim = EngineSimulator(
        sc.engine,
        sc.scheduler,
        sc.workload,
        horizon=60,
        seed=seed,
        record_batches=True,
        block=block,  # small blocks: exercise the window folding
        coalesce=coalesce,
    )
    sim.run()
    return sim


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("max_seqs", [None, 7])
def test_batch_rules_and_token_conservation(scheduler: str, max_seqs: int | None) -> None:
    sim = random_run(scheduler, seed=3, max_seqs=max_seqs)
    recs = sim.batches
    assert len(recs) > 100
    # regenerate the request stream the simulator saw (same seed, same blocks)
    times, prompts, outputs = (
        x.tolist() for x in sim.source.sample_block(RequestStreams(3), 0.0, 0, 5000)
    )
    assert times[-1] > sim.horizon
    prefilled = {i: 0 for i in range(len(times))}
    decoded = {i: 0 for i in range(len(times))}
    done_at: dict[int, float] = {}
    for rec in recs:
        ids = [i for i, _ in rec.prefill] + rec.decode
        assert rec.tokens <= 256, "token budget exceeded"
        if max_seqs is not None:
            assert len(ids) <= max_seqs, "max_seqs exceeded"
        assert len(set(rec.decode)) == len(rec.decode), "two decode tokens for one request"
        for i in rec.decode:
            assert prefilled[i] == prompts[i], "decode before prefill finished"
            assert times[i] <= rec.start, "served before it arrived"
        for i, c in rec.prefill:
            assert c >= 1
            assert times[i] <= rec.start, "prefilled before it was seen"
        for i in rec.decode:
            decoded[i] += 1
            if decoded[i] == outputs[i]:
                done_at[i] = rec.end
        for i, c in rec.prefill:
            prefilled[i] += c
            assert prefilled[i] <= prompts[i]
        assert len(set(i for i, _ in rec.prefill) & set(rec.decode)) == 0
    # every request got exactly its tokens; finished ones left at their last decode batch
    assert sim.completed == len(done_at)
    for i, t_done in done_at.items():
        assert decoded[i] == outputs[i] and prefilled[i] == prompts[i]
        assert sim.w_fin[i - sim.base] == t_done if i >= sim.base else True
    assert all(decoded[i] <= outputs[i] for i in decoded)
    # tokens processed = tokens arrived - backlog
    total = sum(r.tokens for r in recs)
    assert total == sim.processed
    arrived = sum(prompts[i] + outputs[i] for i in range(sim.n_vis))
    backlog = sum(prompts[i] - prefilled[i] + outputs[i] - decoded[i] for i in range(sim.n_vis))
    assert total == arrived - backlog


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_coalesced_runs_match_batch_by_batch(scheduler: str) -> None:
    fast = random_run(scheduler, seed=5, max_seqs=None, coalesce=True)
    slow = random_run(scheduler, seed=5, max_seqs=None, coalesce=False)
    assert len(fast.batches) == len(slow.batches)
    for a, b in zip(fast.batches, slow.batches, strict=True):
        assert (a.prefill, a.decode) == (b.prefill, b.decode)
        assert a.end == pytest.approx(b.end, rel=1e-9)
    assert fast.counters.not_work_conserving == slow.counters.not_work_conserving


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("max_seqs", [3, 7])
def test_coalesced_runs_match_batch_by_batch_with_max_seqs(scheduler: str, max_seqs: int) -> None:
    """With a slot limit the shortcut also advances runs that serve only the oldest decoders
    or leave prompts waiting; those runs are summed batch by batch: the same numbers."""
    fast = random_run(scheduler, seed=6, max_seqs=max_seqs, coalesce=True)
    slow = random_run(scheduler, seed=6, max_seqs=max_seqs, coalesce=False)
    assert len(fast.batches) == len(slow.batches) > 100
    for a, b in zip(fast.batches, slow.batches, strict=True):
        assert (a.prefill, a.decode) == (b.prefill, b.decode)
        assert a.end == pytest.approx(b.end, rel=1e-9)
    assert fast.counters.not_work_conserving == slow.counters.not_work_conserving
    assert fast.counters.tokens == slow.counters.tokens == fast.processed
    assert fast.completed == slow.completed


def test_coalesced_runs_with_waiting_prompts_are_exact() -> None:
    """FasterTransformer decodes its group while prompts wait: those runs are advanced in one
    step batch by batch, so their times equal forming every batch, to the last bit."""
    arrivals = [0.0] * 3 + [0.01 * i for i in range(1, 40)]
    outputs = [200, 150, 90] + [5] * 39

    def run(coalesce: bool) -> EngineSimulator:
        sim = EngineSimulator(
            EngineSpec(token_budget=128),
            scheduler_spec("fastertransformer"),
            RequestList(arrivals, [30] * len(arrivals), outputs),
            horizon=1e6,
            record_batches=True,
            coalesce=coalesce,
        )
        return sim.run()

    fast, slow = run(True), run(False)
    # up to the last group's prefill prompts wait; after it, runs are summed in closed form
    last = max(i for i, r in enumerate(slow.batches) if r.prefill)
    assert last > 200
    assert [(r.start, r.end, r.prefill, r.decode) for r in fast.batches[: last + 1]] == [
        (r.start, r.end, r.prefill, r.decode) for r in slow.batches[: last + 1]
    ]
    assert len(fast.batches) == len(slow.batches)
    assert fast.counters.not_work_conserving == slow.counters.not_work_conserving
    assert fast.completed == slow.completed == len(arrivals)


def test_work_conservation_check_matches_the_largest_batch() -> None:
    """The check scans prompts only until it sees a larger batch (and skips the scan when the
    prompts' share of the work already says so): the same verdict as the reference."""
    rng = np.random.default_rng(11)
    for _ in range(3000):
        budget = int(rng.integers(1, 600))
        slots = int(rng.integers(1, 40))
        dec = int(rng.integers(0, 60))
        left = rng.integers(1, 300, size=rng.integers(0, 60)).tolist()
        available = dec + sum(left)
        if not available:
            continue
        n = int(rng.integers(0, min(budget, available) + 1))
        want = n < min(budget, available) and n < largest_batch(
            budget, slots, dec, len(left), list(left)
        )
        got = not_work_conserving(n, available, budget, slots, dec, len(left), left.copy)
        assert got == want, (n, budget, slots, dec, left)


@pytest.mark.parametrize("scheduler", ["orca", "vllm"])
def test_block_size_does_not_change_the_run(scheduler: str) -> None:
    """Requests come from per-quantity streams: cutting them in blocks changes nothing."""
    small = random_run(scheduler, seed=8, max_seqs=None, block=97)
    large = random_run(scheduler, seed=8, max_seqs=None, block=100_000)
    assert small.base > 0 and large.base == 0  # the small run folded and dropped requests
    assert [(r.start, r.prefill, r.decode) for r in small.batches] == [
        (r.start, r.prefill, r.decode) for r in large.batches
    ]
    assert small.completed == large.completed


def test_same_seed_same_result() -> None:
    sc = Scenario(
        scheduler="orca",
        workload={"arrival": {"kind": "poisson", "rate": 12}},
        run={"horizon_s": 300, "seed": 11},
    )
    a, b = simulate(sc), simulate(sc)
    assert a.summary() == b.summary()
    for key in a.series:
        np.testing.assert_array_equal(a.series[key], b.series[key])
    c = simulate(sc.model_copy(update={"run": sc.run.model_copy(update={"seed": 12})}))
    assert c.summary() != a.summary()


def one_batch(
    scheduler: str,
    budget: int,
    dec_left: list[int],
    waiting: list[int],
    head_done: int,
    max_seqs: int | None = None,
) -> EngineSimulator:
    nd = len(dec_left)
    return run_requests(
        scheduler,
        budget,
        arrivals=[0.0] * (nd + len(waiting)),
        prompts=[5] * nd + waiting,
        outputs=dec_left + [3] * len(waiting),
        start_decoding=nd,
        start_prefilled=head_done,
        max_seqs=max_seqs,
        max_batches=1,
    )


@pytest.mark.parametrize("scheduler", ["orca", "sarathi"])
def test_orca_and_sarathi_are_work_conserving(scheduler: str) -> None:
    rng = np.random.default_rng(2024)
    for _ in range(300):
        budget = int(rng.integers(1, 64))
        dec = rng.integers(1, 9, size=rng.integers(0, 40)).tolist()
        waiting = rng.integers(1, 90, size=rng.integers(0, 6)).tolist()
        if not dec and not waiting:
            continue
        head = int(rng.integers(0, waiting[0])) if waiting else 0
        sim = one_batch(scheduler, budget, dec, waiting, head)
        work = len(dec) + sum(waiting) - head
        assert sim.batches[0].tokens == min(budget, work)
        assert sim.counters.not_work_conserving == 0


def largest_feasible(budget: int, k: int, dec: int, prefill_left: list[int]) -> int:
    """Brute force: the most tokens in a batch of at most ``k`` requests and ``budget`` tokens."""
    items = [1] * dec + prefill_left
    best = 0
    for size in range(0, min(k, len(items)) + 1):
        for combo in itertools.combinations(range(len(items)), size):
            best = max(best, min(budget, sum(items[i] for i in combo)))
    return best


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_checker_matches_brute_force_with_max_seqs(scheduler: str) -> None:
    rng = np.random.default_rng(7)
    spec = scheduler_spec(scheduler)
    for _ in range(150):
        budget = int(rng.integers(2, 40))
        k = int(rng.integers(1, 5))
        dec = rng.integers(1, 5, size=rng.integers(0, 5)).tolist()
        waiting = rng.integers(1, min(budget, 30) + 1, size=rng.integers(0, 4)).tolist()
        if not dec and not waiting:
            continue
        head = int(rng.integers(0, waiting[0])) if waiting and spec.chunks else 0
        sim = one_batch(scheduler, budget, dec, waiting, head, max_seqs=k)
        left = list(waiting)
        if left:
            left[0] -= head
        best = largest_feasible(budget, k, len(dec), left)
        flagged = sim.counters.not_work_conserving == 1
        assert flagged == (sim.batches[0].tokens < best)


def test_fig8_witnesses_for_non_work_conserving_schedulers() -> None:
    """vLLM and FasterTransformer leave budget unused while work waits (the paper's Fig. 8)."""
    counts = {}
    for name, budget in [("vllm", 4), ("fastertransformer", 4), ("orca", 5), ("sarathi", 4)]:
        sim = run_requests(
            name, budget, [0, 0, 0, 0.001, 0.001], [1] * 5, [2, 4, 3, 1, 1], start_decoding=3
        )
        counts[name] = sim.counters.not_work_conserving
    # vllm batch 2 (Dp Ep: 2 of 4 tokens while A, B, C could decode);
    # fastertransformer batches 2-4 (D and E wait for the group to finish)
    assert counts == {"vllm": 1, "fastertransformer": 3, "orca": 0, "sarathi": 0}


def test_single_request_latency_closed_form() -> None:
    """One request alone: a prefill batch of p tokens, then d decode batches of one token."""
    p, d = 300, 7
    eng = EngineSpec(token_budget=512)
    t = eng.batch_time
    for name in ["fastertransformer", "vllm", "orca", "sarathi"]:
        sim = run_requests(name, 512, [1.0], [p], [d])
        assert sim.completed == 1
        fin = sim.w_fin[0]
        expect = 1.0 + t.seconds(p, 0) + d * t.seconds(0, 1)
        assert fin == pytest.approx(expect, rel=1e-12)
        assert sim.w_ftok[0] == pytest.approx(1.0 + t.seconds(p, 0) + t.seconds(0, 1))


def test_chunked_prompt_longer_than_budget_runs() -> None:
    sim = run_requests("sarathi", 64, [0.0], [200], [2])
    pre, dec = tokens_per_request(sim.batches)
    assert [r.tokens for r in sim.batches] == [64, 64, 64, 8, 1, 1]
    assert pre == {0: 200} and dec == {0: 2}


def test_affine_batch_time_with_kv_reads() -> None:
    """One request under the affine model: prefill, then decode batches reading p + j tokens."""
    from policyopt.model import AffineBatchTime

    bt = AffineBatchTime(c_ms=5.0, cp_ms=0.1, cd_ms=0.3, ckv_ms=0.01, max_tokens=64)
    p, d = 100, 4
    sim = EngineSimulator(
        EngineSpec(token_budget=128, batch_time=bt),
        scheduler_spec("sarathi"),
        RequestList([0.0], [p], [d]),
        horizon=100.0,
        record_batches=True,
    )
    sim.run()
    times = [r.end - r.start for r in sim.batches]
    expect = [(5.0 + 0.1 * p) / 1000] + [(5.0 + 0.3 + 0.01 * (p + j)) / 1000 for j in range(d)]
    assert times == pytest.approx(expect, rel=1e-12)
    # the prefill batch (100 tokens) lies outside the profiled range of 64 tokens: counted
    assert sim.counters.out_of_range == 1


def test_first_token_at_prefill_option() -> None:
    p, d = 50, 3
    eng = EngineSpec(token_budget=512)
    sim = EngineSimulator(
        eng,
        scheduler_spec("orca"),
        RequestList([0.0], [p], [d]),
        horizon=100.0,
        first_token="prefill",
    )
    sim.run()
    assert sim.w_ftok[0] == pytest.approx(eng.batch_time.seconds(p, 0))
    assert sim.w_fin[0] == pytest.approx(
        eng.batch_time.seconds(p, 0) + d * eng.batch_time.seconds(0, 1)
    )
