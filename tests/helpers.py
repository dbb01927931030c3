"""Shared helpers for the tests."""

from __future__ import annotations

import signal
import subprocess

import numpy as np

from policyopt.model import EngineSpec, SchedulerSpec
from policyopt.sim.engine_sim import BatchRecord, EngineSimulator, RequestList


def run_requests(
    scheduler: str | SchedulerSpec,
    budget: int,
    arrivals: list[float],
    prompts: list[int],
    outputs: list[int],
    *,
    start_decoding: int = 0,
    start_prefilled: int = 0,
    max_seqs: int | None = None,
    horizon: float = 1e6,
    max_batches: int | None = None,
) -> EngineSimulator:
    """Run an explicit request list to completion (or ``max_batches``), recording batches."""
    from policyopt.model import scheduler_spec

    spec = scheduler_spec(scheduler)
    sim = EngineSimulator(
        EngineSpec(token_budget=budget, max_seqs=max_seqs),
        spec,
        RequestList(arrivals, prompts, outputs),
        horizon=horizon,
        record_batches=True,
        start_decoding=start_decoding,
        start_prefilled=start_prefilled,
    )
    sim.run(max_batches=max_batches)
    return sim


def tokens_per_request(batches: list[BatchRecord]) -> tuple[dict[int, int], dict[int, int]]:
    """Prefill and decode tokens each request received, summed over ``batches``."""
    pre: dict[int, int] = {}
    dec: dict[int, int] = {}
    for rec in batches:
        for rid, c in rec.prefill:
            pre[rid] = pre.get(rid, 0) + c
        for rid in rec.decode:
            dec[rid] = dec.get(rid, 0) + 1
    return pre, dec


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit code 2 and exactly one stderr line ``policyopt: error: ...`` naming ``words``;
    nothing on stdout, no traceback."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("policyopt: error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert proc.stdout == ""


def assert_usage_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """An argparse error: exit code 2, the usage, then one line ``policyopt CMD: error: ...``
    naming ``words``; nothing on stdout, no traceback."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and errors[0] == lines[-1], proc.stderr
    assert lines[0].startswith("usage: policyopt"), proc.stderr
    assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), proc.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    assert proc.stdout == ""


STATION_LINE = (
    "name: line\n"
    "engines: {s1: {kind: station}}\n"
    "classes:\n"
    "  a: {engine: s1, service: {kind: exponential, mean: 0.5}}\n"
    "workflows:\n"
    "  - {name: w, arrival: {kind: poisson, rate: 1.0}, entry: a, after: {a: exit}}\n"
)
"""A network file: one station serving one class at load 0.5."""


def interruptible() -> None:
    """``preexec_fn`` of a subprocess a test interrupts with SIGINT: Ctrl-C's default action
    back (a shell without job control starts background commands with SIGINT ignored, which
    Python keeps, so the child would never see the interrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
