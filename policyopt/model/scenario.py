"""A scenario: one engine, one scheduler, one workload and how long to run them.

It is what a YAML/TOML config file declares (see :mod:`policyopt.model.config`)::

    engine:
      token_budget: 512
      batch_time: {kind: staircase, c_ms: 11.28, a_ms: 35.47, b0: 128}
    scheduler: sarathi
    workload:
      arrival: {kind: poisson, rate: 12.0}
      prompt: {kind: lognormal, mean: 129, sigma: 0.7}
      output: {kind: lognormal, mean: 112, sigma: 0.7}
    run: {horizon_s: 3600, seed: 0}

Cross-field rules checked here: a scheduler that cannot chunk prefill needs a token budget
(and, with ``max_seqs``, nothing more) that holds the workload's longest prompt, or that prompt
would never run; a limited KV cache must hold the longest prompt plus the longest output, or
that request would never finish.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from policyopt.errors import SpecError
from policyopt.model.engine import EngineSpec
from policyopt.model.scheduler import SchedulerField, SchedulerSpec, default_scheduler
from policyopt.model.validation import Samples, StrictSpec
from policyopt.model.workload import TraceArrivals, Workload


class RunSpec(StrictSpec):
    """How long to simulate and what to keep.

    * ``horizon_s``: simulated seconds; no batch starts at or after it.
    * ``warmup_s``: requests arriving before it are left out of the averages (default 10% of
      the horizon).
    * ``seed``: the one seed all randomness flows from.
    * ``samples``: points of the number-in-system / backlog time series.
    * ``first_token``: ``decode`` (the first output token is the end of the first decode
      batch, the paper's convention) or ``prefill`` (prefill emits it).
    """

    horizon_s: float = Field(3600.0, gt=0, description="seconds")
    warmup_s: float | None = Field(None, ge=0, description="seconds")
    seed: int = Field(0, ge=0)
    samples: Samples = 2000
    first_token: Literal["decode", "prefill"] = "decode"

    @model_validator(mode="after")
    def _warmup_inside(self) -> RunSpec:
        if self.warmup_s is not None and self.warmup_s >= self.horizon_s:
            raise SpecError(
                "warmup_s",
                f"{self.warmup_s:g} s is not below horizon_s ({self.horizon_s:g} s)",
                "shorten the warm-up or lengthen the horizon",
            )
        return self

    @property
    def warmup(self) -> float:
        """Warm-up length in seconds."""
        return 0.1 * self.horizon_s if self.warmup_s is None else self.warmup_s


def check_fits(engine: EngineSpec, scheduler: SchedulerSpec, workload: Workload) -> None:
    """Refuse a scheduler that can never run the workload's longest prompt."""
    if scheduler.chunks:
        return
    longest = workload.longest_prompt()
    if longest > engine.token_budget:
        raise SpecError(
            "engine.token_budget",
            f"{engine.token_budget} tokens cannot hold a {longest}-token prompt, and scheduler "
            f"{scheduler.label!r} cannot chunk prefill (the prompt would never run)",
            f"raise engine.token_budget to >= {longest}, lower workload.max_prompt_len to "
            f"<= {engine.token_budget}, or use orca or sarathi",
        )


def check_memory(engine: EngineSpec, workload: Workload, field: str = "engine.kv_cache") -> None:
    """Refuse a KV cache too small to ever finish the workload's longest request."""
    if engine.kv_cache is not None:
        engine.kv_cache.check_request(workload.longest_prompt(), workload.longest_output(), field)


class RequestClass(Workload):
    """One class of requests at a multi-class engine: a workload (Poisson or deterministic
    arrivals, prompt and output lengths) and a holding cost per request per second."""

    holding_cost: float = Field(1.0, ge=0, description="cost per request per second")

    @model_validator(mode="after")
    def _arrivals(self) -> RequestClass:
        if isinstance(self.arrival, TraceArrivals):
            raise SpecError(
                "arrival",
                "a request class takes poisson or deterministic arrivals, not a trace",
                "use kind: poisson or kind: deterministic (a trace drives a single workload)",
            )
        return self


class Scenario(StrictSpec):
    """Engine, scheduler, workload and run options, validated together.

    ``classes`` (name -> :class:`RequestClass`) replaces ``workload`` for an engine shared by
    several kinds of requests (e.g. chat and long documents); a network policy then decides
    which class fills the token budget first.
    """

    engine: EngineSpec = Field(default_factory=EngineSpec)
    scheduler: SchedulerField = Field(default_factory=default_scheduler)
    workload: Workload = Field(default_factory=Workload)
    classes: dict[str, RequestClass] | None = None
    run: RunSpec = Field(default_factory=RunSpec)

    @model_validator(mode="after")
    def _fits(self) -> Scenario:
        if self.classes is None:
            check_fits(self.engine, self.scheduler, self.workload)
            check_memory(self.engine, self.workload)
            return self
        if "workload" in self.model_fields_set:
            raise SpecError(
                "classes",
                "a scenario has either a workload or request classes, not both",
                "move the workload into classes, or drop classes",
            )
        if not self.classes:
            raise SpecError("classes", "no request class", "give at least one class")
        for name, wl in self.classes.items():
            try:
                check_fits(self.engine, self.scheduler, wl)
                check_memory(self.engine, wl)
            except SpecError as err:
                raise SpecError(err.field, f"class {name!r}: {err.problem}", err.fix) from None
        return self

    @property
    def multiclass(self) -> bool:
        """Whether the scenario declares request classes (simulated as a one-engine network)."""
        return self.classes is not None

    @property
    def network_form(self) -> bool:
        """Whether the scenario runs as its one-engine network: it declares request classes
        or a limited KV cache (the memory rules live in the network simulator's engines)."""
        return self.classes is not None or self.engine.kv_cache is not None
