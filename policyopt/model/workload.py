"""Workloads: an arrival process and prompt/output length distributions.

Arrival processes (rates in requests/s, times in seconds):

* ``poisson``: exponential inter-arrival times with ``rate``.
* ``deterministic``: one request every ``1/rate`` seconds, the first at ``1/rate``.
* ``trace``: replay of a CSV with columns ``arrival_s, prompt_len, output_len`` (sorted by
  time); the trace also fixes the lengths, so ``prompt``/``output`` must be left out.

The workload samples requests in blocks (:meth:`Workload.sample_block`); all randomness comes
from the generator passed in, so one seed gives one request stream whatever the scheduler
(common random numbers across schedulers).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from policyopt.errors import SpecError
from policyopt.model.files import check_file, csv_reader, read_text, require_columns, rows_of
from policyopt.model.lengths import LengthDist, LogNormal
from policyopt.model.validation import MaxLength, StrictSpec


class _Spec(StrictSpec):
    """Base of this module's specs (:class:`StrictSpec`: frozen, strict keys and numbers)."""


class PoissonArrivals(_Spec):
    """Poisson process with ``rate`` requests/s."""

    kind: Literal["poisson"] = "poisson"
    rate: float = Field(..., gt=0, description="requests/s")

    def with_rate(self, rate: float) -> PoissonArrivals:
        """The same process at ``rate`` requests/s."""
        return self.model_copy(update={"rate": float(rate)})


class DeterministicArrivals(_Spec):
    """One request every ``1/rate`` seconds."""

    kind: Literal["deterministic"] = "deterministic"
    rate: float = Field(..., gt=0, description="requests/s")

    def with_rate(self, rate: float) -> DeterministicArrivals:
        """The same process at ``rate`` requests/s."""
        return self.model_copy(update={"rate": float(rate)})


class TraceArrivals(_Spec):
    """Replay of a CSV trace (``arrival_s, prompt_len, output_len``).

    ``time_scale`` multiplies every arrival time (``0.5`` replays twice as fast).
    """

    kind: Literal["trace"] = "trace"
    path: str
    time_scale: float = Field(1.0, gt=0)

    @property
    def rate(self) -> float:
        """Mean arrival rate of the trace, requests/s (count / last arrival time)."""
        times, _, _ = read_trace(self.path)
        span = float(times[-1]) * self.time_scale
        return len(times) / span if span > 0 else float("inf")


Arrivals = Annotated[
    PoissonArrivals | DeterministicArrivals | TraceArrivals, Field(discriminator="kind")
]


@lru_cache(maxsize=8)
def _read_trace_cached(path: str, mtime: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    text = read_text(path, "a trace CSV", "give the path of a trace CSV")
    reader = csv_reader(path, text)
    require_columns(
        path,
        reader,
        ["arrival_s", "prompt_len", "output_len"],
        "the header must be arrival_s,prompt_len,output_len",
    )
    last = -math.inf
    for lineno, row in rows_of(path, reader):
        try:
            t = float(row["arrival_s"])
            p = float(row["prompt_len"])
            d = float(row["output_len"])
        except (TypeError, ValueError):
            raise SpecError(
                f"{path} line {lineno}",
                f"not a number in row {dict(row)}",
                "every field must be a number",
            ) from None
        if not math.isfinite(t) or t < 0:
            raise SpecError(
                f"{path} line {lineno}", f"arrival_s={t} is not a time >= 0", "fix the row"
            )
        if t < last:
            raise SpecError(
                f"{path} line {lineno}",
                f"arrival_s={t} is earlier than the row before ({last})",
                "sort the trace by arrival_s",
            )
        for name, val in (("prompt_len", p), ("output_len", d)):
            if not math.isfinite(val) or val < 1 or val != int(val):
                raise SpecError(
                    f"{path} line {lineno}",
                    f"{name}={val:g} is not a whole number of tokens >= 1",
                    "fix or remove the row",
                )
        last = t
        times.append(t)
        prompts.append(int(p))
        outputs.append(int(d))
    if not times:
        raise SpecError(path, "the trace has no data rows", "add at least one request")
    return (
        np.asarray(times, dtype=np.float64),
        np.asarray(prompts, dtype=np.int64),
        np.asarray(outputs, dtype=np.int64),
    )


def read_trace(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival times (s), prompt and output lengths (tokens) of a trace CSV."""
    p = check_file(path, "give the path of a trace CSV")
    return _read_trace_cached(str(p), p.stat().st_mtime)


class RequestStreams:
    """Independent random streams for arrival times, prompt and output lengths, from one seed."""

    def __init__(self, seed: int) -> None:
        arrivals, prompts, outputs = np.random.SeedSequence(seed).spawn(3)
        self.arrivals = np.random.default_rng(arrivals)
        self.prompts = np.random.default_rng(prompts)
        self.outputs = np.random.default_rng(outputs)


DEFAULT_PROMPT = LogNormal(mean=129, sigma=0.7)
DEFAULT_OUTPUT = LogNormal(mean=112, sigma=0.7)


class Workload(_Spec):
    """Requests arriving at one engine.

    ``max_prompt_len`` is the model's context for prompts: prompt lengths are truncated to it,
    and a scheduler that cannot chunk prefill needs a token budget at least as large as the
    longest prompt the workload can produce. ``max_output_len`` truncates output lengths.
    Defaults: the paper's workload with means 129 prompt and 112 output tokens, lognormal
    spread (``sigma = 0.7``), prompts up to 512 tokens, outputs up to 1024.
    """

    arrival: Arrivals = Field(default_factory=lambda: PoissonArrivals(rate=10.0))
    prompt: LengthDist | None = None
    output: LengthDist | None = None
    max_prompt_len: MaxLength = Field(512, description="tokens")
    max_output_len: MaxLength = Field(1024, description="tokens")

    @model_validator(mode="after")
    def _check(self) -> Workload:
        if isinstance(self.arrival, TraceArrivals):
            for name in ("prompt", "output"):
                if getattr(self, name) is not None:
                    raise SpecError(
                        name,
                        "not used with a trace arrival (the trace gives the lengths)",
                        f"remove {name}",
                    )
            try:
                times, prompts, outputs = read_trace(self.arrival.path)
            except SpecError as err:  # name the config key, keep the file location in the text
                raise SpecError("arrival.path", f"{err.field}: {err.problem}", err.fix) from None
            if times[-1] <= 0:
                raise SpecError(
                    "arrival.path",
                    f"{self.arrival.path}: all {len(times)} arrivals are at t = 0 s, so the "
                    "trace has no arrival rate (requests/s) to scale or report",
                    "give arrival_s the times the requests arrived (increasing), or use "
                    "kind: deterministic or poisson with a rate",
                )
            for name, arr, cap in (
                ("prompt_len", prompts, self.max_prompt_len),
                ("output_len", outputs, self.max_output_len),
            ):
                if arr.max() > cap:
                    raise SpecError(
                        f"max_{name}",
                        f"{cap} tokens is below the trace's longest {name} ({arr.max()})",
                        f"raise max_{name} to >= {arr.max()}",
                    )
        else:
            for name, cap in (("prompt", self.max_prompt_len), ("output", self.max_output_len)):
                try:
                    self._dist(name).pmf(cap)
                except SpecError as err:
                    raise SpecError(f"{name}.{err.field}", err.problem, err.fix) from None
        return self

    def _dist(self, name: str) -> LengthDist:
        dist = getattr(self, name)
        if dist is None:
            return DEFAULT_PROMPT if name == "prompt" else DEFAULT_OUTPUT
        return dist

    @property
    def prompt_dist(self) -> LengthDist:
        """The prompt-length distribution (the default if none was given)."""
        return self._dist("prompt")

    @property
    def output_dist(self) -> LengthDist:
        """The output-length distribution (the default if none was given)."""
        return self._dist("output")

    @property
    def rate(self) -> float:
        """Mean arrival rate, requests/s."""
        return float(self.arrival.rate)

    def mean_prompt(self) -> float:
        """``m_p``: mean prompt tokens of the requests actually generated."""
        if isinstance(self.arrival, TraceArrivals):
            return float(read_trace(self.arrival.path)[1].mean())
        return self.prompt_dist.mean_tokens(self.max_prompt_len)

    def mean_output(self) -> float:
        """``m_d``: mean output (decode) tokens of the requests actually generated."""
        if isinstance(self.arrival, TraceArrivals):
            return float(read_trace(self.arrival.path)[2].mean())
        return self.output_dist.mean_tokens(self.max_output_len)

    def mean_tokens(self) -> float:
        """``m_p + m_d``: mean tokens of work per request."""
        return self.mean_prompt() + self.mean_output()

    def longest_prompt(self) -> int:
        """The longest prompt this workload can produce, tokens."""
        if isinstance(self.arrival, TraceArrivals):
            return int(read_trace(self.arrival.path)[1].max())
        return self.prompt_dist.largest(self.max_prompt_len)

    def longest_output(self) -> int:
        """The longest output this workload can produce, tokens."""
        if isinstance(self.arrival, TraceArrivals):
            return int(read_trace(self.arrival.path)[2].max())
        return self.output_dist.largest(self.max_output_len)

    def with_rate(self, rate: float) -> Workload:
        """The same workload at ``rate`` requests/s (a trace is replayed faster or slower)."""
        if not rate > 0 or not math.isfinite(rate):
            raise SpecError("workload.arrival.rate", f"{rate} is not > 0", "give a positive rate")
        arr = self.arrival
        if isinstance(arr, TraceArrivals):
            new = arr.model_copy(update={"time_scale": arr.time_scale * arr.rate / rate})
        else:
            new = arr.model_copy(update={"rate": float(rate)})
        return self.model_copy(update={"arrival": new})

    def sample_block(
        self, rngs: RequestStreams, start_time: float, start_index: int, n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next ``n`` requests after ``start_time`` (the previous arrival, s).

        Returns arrival times (s, nondecreasing), prompt and output lengths (int64). A trace
        returns fewer than ``n`` (possibly none) when it runs out; ``start_index`` is the
        number of requests already drawn. Arrivals, prompts and outputs come from three
        separate streams, so the requests do not depend on how they are cut into blocks.
        """
        arr = self.arrival
        if isinstance(arr, TraceArrivals):
            times, prompts, outputs = read_trace(arr.path)
            sl = slice(start_index, start_index + n)
            return times[sl] * arr.time_scale, prompts[sl], outputs[sl]
        if isinstance(arr, PoissonArrivals):
            times = start_time + np.cumsum(rngs.arrivals.exponential(1.0 / arr.rate, n))
        else:
            times = (start_index + 1 + np.arange(n, dtype=np.float64)) / arr.rate
        prompts = self.prompt_dist.sample(rngs.prompts, n, self.max_prompt_len)
        outputs = self.output_dist.sample(rngs.outputs, n, self.max_output_len)
        return times, prompts, outputs
