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

A cap pays when it ends a step of the batch-time profile: with a staircase of ``b0``-token
steps (the default profile: 128), a batch of ``2 b0`` tokens takes two steps, one of
``2 b0 + 1`` three. Caps between steps serve fewer tokens in the same time (``docs/policies.md``).
"""

from __future__ import annotations

from policyopt.errors import SpecError
from policyopt.model.network import NetworkSpec
from policyopt.policies import NetworkView, Policy, make_policy


class BatchCap(Policy):
    """``POLICY``'s order, with at most ``tokens`` tokens per batch at an LLM engine while at
    most ``jobs`` prompts wait there (``jobs`` ``None``: always)."""

    caps_tokens = True

    def __init__(self, tokens: int, jobs: int | None, base: Policy | str) -> None:
        if not (isinstance(tokens, int) and tokens >= 1):
            raise SpecError("policy", f"batch-cap: a cap of {tokens!r} tokens", "give >= 1")
        if jobs is not None and not (isinstance(jobs, int) and jobs >= 0):
            raise SpecError("policy", f"batch-cap: a threshold of {jobs!r} jobs", "give >= 0")
        self.tokens = tokens
        self.jobs = jobs
        self.base = make_policy(base)
        if self.base.caps_tokens:
            raise SpecError(
                "policy", f"batch-cap over {self.base.name!r}, which caps batches itself", ""
            )
        self.splits = self.base.splits
        self.every_event = self.base.every_event
        self.may_idle = self.base.may_idle
        limit = str(tokens) if jobs is None else f"{tokens},{jobs}"
        self.name = f"batch-cap:{limit}:{self.base.name}"

    @classmethod
    def from_arg(cls, arg: str) -> BatchCap:
        """``TOKENS[,JOBS]:POLICY``, as in ``batch-cap:256,20:c-mu``."""
        head, colon, base = arg.partition(":")
        usage = "write batch-cap:TOKENS[,JOBS]:POLICY, as in batch-cap:256,20:c-mu"
        if not colon or not base.strip():
            raise SpecError("policy", f"'batch-cap:{arg}' names no policy to cap", usage)
        parts = head.split(",")
        if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
            raise SpecError(
                "policy", f"'batch-cap:{arg}': TOKENS[,JOBS] must be whole numbers", usage
            )
        tokens = int(parts[0])
        jobs = int(parts[1]) if len(parts) == 2 else None
        return cls(tokens, jobs, base.strip())

    def bind(self, net: NetworkSpec) -> None:
        if not any(e.kind == "llm" for e in net.engines.values()):
            raise SpecError(
                "policy",
                f"{self.name}: network {net.name!r} has no LLM engine, so no batch to cap",
                f"use {self.base.name} itself",
            )
        self.base.bind(net)

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The wrapped policy's order."""
        return self.base.order(engine, view)

    def decode_cap(self, engine: int, view: NetworkView) -> int | None:
        """The wrapped policy's budget split."""
        return self.base.decode_cap(engine, view)

    def token_cap(self, engine: int, view: NetworkView) -> int | None:
        """``tokens`` while at most ``jobs`` prompts wait at ``engine``, else ``None`` (the
        full budget); ``None`` at a station."""
        if not view.engines[engine].llm:
            return None
        if self.jobs is not None and view.engine_jobs(engine)[0] > self.jobs:
            return None
        return self.tokens
