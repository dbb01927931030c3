"""The paper's Fig. 8 worked example, batch by batch, for all four schedulers.

Requests A, B, C are decoding with 2, 4 and 3 decode tokens left; D and E each have one
prefill and one decode token and arrive during the first batch.
"""

from __future__ import annotations

import pytest

from tests.helpers import run_requests

NAMES = "ABCDE"

EXPECTED = {
    ("vllm", 4): ["Ad Bd Cd", "Dp Ep", "Ad Bd Cd Dd", "Bd Cd Ed", "Bd"],
    ("orca", 5): ["Ad Bd Cd", "Ad Bd Cd Dp Ep", "Bd Cd Dd Ed", "Bd"],
    ("fastertransformer", 4): ["Ad Bd Cd", "Ad Bd Cd", "Bd Cd", "Bd", "Dp Ep", "Dd Ed"],
    ("sarathi", 4): ["Ad Bd Cd", "Ad Bd Cd Dp", "Bd Cd Dd Ep", "Bd Ed"],
}


def render(rec) -> str:
    """A batch as a string: decode tokens first (Xd), then prefill tokens (Xp)."""
    dec = [f"{NAMES[i]}d" for i in rec.decode]
    pre = [f"{NAMES[i]}p" * 1 for i, c in rec.prefill for _ in range(c)]
    return " ".join(sorted(dec) + pre)


@pytest.mark.parametrize(("scheduler", "budget"), list(EXPECTED))
def test_fig8(scheduler: str, budget: int) -> None:
    sim = run_requests(
        scheduler,
        budget,
        arrivals=[0.0, 0.0, 0.0, 0.001, 0.001],
        prompts=[1, 1, 1, 1, 1],
        outputs=[2, 4, 3, 1, 1],
        start_decoding=3,
    )
    got = [render(r) for r in sim.batches]
    # EXPECTED lists tokens alphabetically, as docs/schedulers.md does; render() puts decodes first
    want = [
        " ".join(sorted(b.split(), key=lambda s: (s[1] != "d", s)))
        for b in EXPECTED[(scheduler, budget)]
    ]
    assert got == want
    assert sim.completed == 5
    # batches follow each other without gaps: the engine never idles with work present
    for prev, nxt in zip(sim.batches, sim.batches[1:], strict=False):
        assert nxt.start == pytest.approx(prev.end)
