"""Smaller batches while an engine's queue is short (``batch-cap:TOKENS[,JOBS]:POLICY``).

An LLM engine's batch time grows with the tokens in the batch, and a decoding request gets
one token per batch, so the time a request spends decoding is its output length times the
batch time. A batch that stops below the token budget ends sooner and moves every decoding
request on sooner; it also serves fewer prefill tokens per second. While the prompts waiting
at the engine are few, the first effect wins and the number of jobs in the network falls; when
they pile up, only the full budget keeps up with the load.

:class:`BatchCap` wraps a policy (its class order, and its budget split if it has one) and caps
the tokens of every batch of an LLM engine at ``TOKENS`` while at most ``JOBS`` prompts wait
there (requests whose prefill has not finished); with more, the engine forms its full batch.
Without ``JOBS`` every batch is capped: the engine then behaves as if its token budget were
``TOKENS``, which lowers its capacity (``policyopt capacity``) and is unstable at loads the
full budget carries. With the threshold, a backlog always gets full batches, so the policy
keeps the throughput of the budget (the capped batches are counted as not work-conserving
in the results). Stations have no token budget: the cap does not apply there.

``TOKENS`` may also be ``auto`` or ``auto=RHO`` (default ``RHO`` = :data:`AUTO_LOAD`): each
engine gets its own cap, the smallest batch that ends a step of its batch-time profile
(:func:`step_ends`) and still carries the engine's nominal token load (traffic equations) at
a load of at most ``RHO``; an engine where no smaller batch does keeps its full budget. No
tuning, and no cap where the load leaves no room for one.

A cap pays when it ends a step of the batch-time profile: with a staircase of ``b0``-token
steps (the default profile: 128), a batch of ``2 b0`` tokens takes two steps, one of
``2 b0 + 1`` three. Caps between steps serve fewer tokens in the same time (``docs/policies.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from policyopt.errors import SpecError
from policyopt.model.network import NetworkSpec
from policyopt.policies import NetworkView, Policy, make_policy
from policyopt.sim.batching import batch_time_table

AUTO_LOAD = 0.99
"""The default ``RHO`` of ``batch-cap:auto``: the largest nominal load a capped engine may
carry."""

AFFINE_LEVELS = 8
"""An affine batch-time profile has no steps: its candidate caps are ``b * i / 8``."""


def has_llm_engine(net: NetworkSpec) -> bool:
    """Does ``net`` have an LLM engine, so a batch to cap?"""
    return any(e.kind == "llm" for e in net.engines.values())


def step_ends(engine: Any) -> list[int]:
    """The token counts (increasing, the budget last) that end a step of ``engine``'s batch
    time: one token more takes longer. For a profile that also depends on the batch's mix
    (affine), ``budget * i / 8``, ``i = 1..8``."""
    b = int(engine.token_budget)
    table = batch_time_table(engine)
    if table is None:
        return sorted({max(1, round(b * i / AFFINE_LEVELS)) for i in range(1, AFFINE_LEVELS + 1)})
    return [n for n in range(1, b + 1) if n == b or table[n + 1] > table[n]]


CAP_LEVELS = 8
"""Caps offered at most by :func:`cap_levels`."""


def cap_levels(net: NetworkSpec) -> list[int]:
    """The caps (tokens, increasing, the budget last) the ``batch-cap`` tuning family
    searches and the environment's ``cap`` action offers: the :func:`step_ends` of the LLM
    engine with the largest budget, at most :data:`CAP_LEVELS` of them evenly spread.
    ``ValueError`` for a network without an LLM engine (no batch to cap)."""
    if not has_llm_engine(net):
        raise ValueError(f"network {net.name!r} has no LLM engine, so no batch to cap")
    llm = [e for e in net.engines.values() if e.kind == "llm"]
    ends = step_ends(max(llm, key=lambda e: e.token_budget))
    if len(ends) > CAP_LEVELS:
        picks = {round(i * (len(ends) - 1) / (CAP_LEVELS - 1)) for i in range(CAP_LEVELS)}
        ends = [ends[i] for i in sorted(picks)]
    return ends


@dataclass(frozen=True)
class CapChoice:
    """The smallest batch of one LLM engine that carries its nominal token load: ``cap``
    tokens (``None``: no batch below the budget does), whose batch takes ``batch_s`` seconds,
    at a load of ``load`` (the nominal token load over the capped token rate; at the budget
    when ``cap`` is ``None``)."""

    engine: str
    cap: int | None
    batch_s: float
    load: float


def smallest_caps(net: NetworkSpec, load: float = AUTO_LOAD) -> list[CapChoice | None]:
    """Per engine of ``net`` (``None`` at a station): the smallest of its :func:`step_ends`
    whose token rate (tokens / batch seconds, at the engine's nominal prefill share) carries
    the engine's nominal token load (traffic equations) at a load of at most ``load``."""
    from policyopt.solvers.traffic import traffic

    tr = traffic(net)
    offered = tr.offered @ tr.split  # tokens/s routed to each engine
    out: list[CapChoice | None] = []
    for j, name in enumerate(net.topology.engines):
        engine = net.engines[name]
        if engine.kind != "llm":
            out.append(None)
            continue
        spec = engine.engine_spec()
        share = float(tr.prefill_share[j])
        ends = step_ends(engine)
        for n in ends:
            seconds = float(spec.batch_seconds(n, share))
            rho = float(offered[j]) * seconds / n
            if rho <= load or n == ends[-1]:
                out.append(CapChoice(name, n if n < ends[-1] else None, seconds, rho))
                break
    return out


def caps_table(choices: list[CapChoice], load: float = AUTO_LOAD) -> str:
    """:func:`smallest_caps` as the text ``policyopt capacity NETWORK`` prints."""
    from policyopt.report import format_table

    cells = [
        [
            c.engine,
            "none below the budget" if c.cap is None else f"{c.cap:d}",
            f"{1000 * c.batch_s:.1f}",
            f"{c.load:.4f}",
        ]
        for c in choices
    ]
    head = (
        f"smallest batches that carry the nominal load at a load of at most {load:g} "
        "(policy batch-cap:auto; docs/policies.md):"
    )
    return head + "\n" + format_table(["engine", "cap tokens", "batch ms", "load"], cells)


def auto_caps(net: NetworkSpec, load: float) -> list[int | None]:
    """Per engine of ``net``: the cap of :func:`smallest_caps` (``None``: the full budget, and
    at stations)."""
    return [None if c is None else c.cap for c in smallest_caps(net, load)]


class BatchCap(Policy):
    """``POLICY``'s order, with at most ``tokens`` tokens per batch at an LLM engine while at
    most ``jobs`` prompts wait there (``jobs`` ``None``: always); ``tokens`` ``None``: each
    engine's :func:`auto_caps` at ``load``."""

    caps_tokens = True

    def __init__(
        self,
        tokens: int | None,
        jobs: int | None,
        base: Policy | str,
        load: float = AUTO_LOAD,
    ) -> None:
        if tokens is not None and not (isinstance(tokens, int) and tokens >= 1):
            raise SpecError("policy", f"batch-cap: a cap of {tokens!r} tokens", "give >= 1")
        if jobs is not None and not (isinstance(jobs, int) and jobs >= 0):
            raise SpecError("policy", f"batch-cap: a threshold of {jobs!r} jobs", "give >= 0")
        if not (isinstance(load, (int, float)) and math.isfinite(load) and 0 < load <= 1):
            raise SpecError("policy", f"batch-cap:auto={load!r}", "give a load in (0, 1]")
        self.tokens = tokens
        self.jobs = jobs
        self.load = float(load)
        self.base = make_policy(base)
        if self.base.caps_tokens:
            raise SpecError(
                "policy", f"batch-cap over {self.base.name!r}, which caps batches itself", ""
            )
        self.splits = self.base.splits
        self.every_event = self.base.every_event
        self.may_idle = self.base.may_idle
        self.caps: list[int | None] = []  # per engine, set by bind
        if tokens is not None:
            cap = str(tokens)
        else:
            cap = "auto" if self.load == AUTO_LOAD else f"auto={self.load!r}"
        limit = cap if jobs is None else f"{cap},{jobs}"
        self.name = f"batch-cap:{limit}:{self.base.name}"

    @classmethod
    def from_arg(cls, arg: str) -> BatchCap:
        """``TOKENS[,JOBS]:POLICY``, ``TOKENS`` a whole number, ``auto`` or ``auto=RHO``, as
        in ``batch-cap:256,20:c-mu`` or ``batch-cap:auto,50:c-mu``."""
        head, colon, base = arg.partition(":")
        usage = (
            "write batch-cap:TOKENS[,JOBS]:POLICY (TOKENS a whole number, auto or auto=RHO), "
            "as in batch-cap:256,20:c-mu"
        )
        if not colon or not base.strip():
            raise SpecError("policy", f"'batch-cap:{arg}' names no policy to cap", usage)
        parts = [p.strip() for p in head.split(",")]
        bad = SpecError("policy", f"'batch-cap:{arg}': TOKENS[,JOBS] must be whole numbers", usage)
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise bad
        jobs = int(parts[1]) if len(parts) == 2 else None
        cap, _, rho = parts[0].partition("=")
        if cap == "auto":
            try:
                load = float(rho) if rho else AUTO_LOAD
            except ValueError:
                problem = f"'batch-cap:{arg}': RHO must be a number"
                raise SpecError("policy", problem, usage) from None
            return cls(None, jobs, base.strip(), load)
        if not parts[0].isdigit():
            raise bad
        return cls(int(parts[0]), jobs, base.strip())

    def bind(self, net: NetworkSpec) -> None:
        if not has_llm_engine(net):
            raise SpecError(
                "policy",
                f"{self.name}: network {net.name!r} has no LLM engine, so no batch to cap",
                f"use {self.base.name} itself",
            )
        self.base.bind(net)
        if self.tokens is None:
            self.caps = auto_caps(net, self.load)
        else:
            llm = [net.engines[name].kind == "llm" for name in net.topology.engines]
            self.caps = [self.tokens if is_llm else None for is_llm in llm]

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The wrapped policy's order."""
        return self.base.order(engine, view)

    def decode_cap(self, engine: int, view: NetworkView) -> int | None:
        """The wrapped policy's budget split."""
        return self.base.decode_cap(engine, view)

    def token_cap(self, engine: int, view: NetworkView) -> int | None:
        """The engine's cap while at most ``jobs`` prompts wait at ``engine``, else ``None``
        (the full budget); ``None`` at a station and where :func:`auto_caps` found none."""
        cap = self.caps[engine]
        if cap is None or (self.jobs is not None and view.engine_jobs(engine)[0] > self.jobs):
            return None
        return cap
