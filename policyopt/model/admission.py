"""Admission rules of a limited KV cache, and what an engine knows of output lengths.

An engine with a limited KV cache (:class:`~policyopt.model.kv_cache.KVCacheSpec`) decides
before each batch which waiting prompts its scheduler may start (they take KV-cache blocks
from then on): its **admission rule**, ``kv_cache.admission``. A rule is data, a name and its
options, validated like a scheduler as a pydantic discriminated union on ``name`` over the
registered specs (:func:`register_admission_spec`); a plain name is accepted too. How each
rule decides lives with the simulator (:mod:`policyopt.sim.admission`, one module per rule);
``docs/schedulers.md`` (memory-aware admission) writes each one out.

================  ======================================================  ==================
name              admits                                                  output lengths
================  ======================================================  ==================
``fcfs``          oldest first within a class, while the prompt fits      not used
``mc-sf``         shortest predicted output first, while the projected    needed
                  memory of every future batch fits (Jaillet et al.)
``wait``          a type's oldest ``n_j`` once ``n_j`` of that type       needed
                  wait (Ao et al.; thresholds from the fluid model)
``nested-wait``   the oldest ``n_1`` once ``n_1`` wait; a request         not used
                  still running at a segment's end waits there until
                  ``n_k`` have reached it (Ao et al., unknown lengths)
================  ======================================================  ==================

A rule that ranks or groups requests by their output length needs the engine to know it:
``kv_cache.output_lengths`` says how (:data:`OutputLengths`): ``exact`` (the true length),
``predicted`` (the true length times ``1 + rel_error * u``, ``u`` uniform on ``[-1, 1]``,
rounded, at least 1 token; drawn from the run's seed) or ``bucketed`` (the upper edge of the
bucket the true length falls in).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, Field, SerializeAsAny, model_validator

from policyopt.errors import SpecError
from policyopt.model.registry import SpecRegistry
from policyopt.model.validation import StrictSpec

# ---------------------------------------------------------------------------- output lengths


def _ascending(edges: Sequence[int], field: str) -> None:
    """Refuse edges (tokens) that are not strictly ascending."""
    for a, b in pairwise(edges):
        if b <= a:
            raise SpecError(field, f"{b} follows {a}: the edges must ascend", "sort them")


class ExactLengths(StrictSpec):
    """The engine knows every request's output length exactly (tokens)."""

    kind: Literal["exact"] = "exact"
    draws: ClassVar[bool] = False
    """Whether a prediction needs a random number."""

    def predict(self, true: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Predicted output lengths (tokens, int64) of requests of ``true`` tokens."""
        return np.asarray(true, dtype=np.int64)


class PredictedLengths(StrictSpec):
    """A prediction with relative error up to ``rel_error``: ``round(true * (1 + rel_error *
    u))`` tokens with ``u`` uniform on ``[-1, 1]``, at least 1 token."""

    kind: Literal["predicted"] = "predicted"
    rel_error: float = Field(..., gt=0, le=1, description="largest relative error")
    draws: ClassVar[bool] = True

    def predict(self, true: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Predicted output lengths (tokens, int64); ``u`` one uniform on ``[-1, 1]`` each."""
        assert u is not None, "a noisy prediction needs its draws"
        guess = np.rint(np.asarray(true, dtype=float) * (1.0 + self.rel_error * u))
        return np.maximum(guess, 1).astype(np.int64)


class BucketedLengths(StrictSpec):
    """The engine knows which bucket a request's output length falls in: it predicts the
    bucket's upper edge. ``edges`` (tokens, ascending): bucket ``i`` holds the lengths in
    ``(edges[i-1], edges[i]]``; the last edge must reach the longest output."""

    kind: Literal["bucketed"] = "bucketed"
    edges: tuple[Annotated[int, Field(ge=1)], ...] = Field(..., min_length=1, description="tokens")
    draws: ClassVar[bool] = False

    @model_validator(mode="after")
    def _ascending_edges(self) -> BucketedLengths:
        _ascending(self.edges, "edges")
        return self

    def predict(self, true: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """The upper edge of each request's bucket (tokens, int64)."""
        edges = np.asarray(self.edges, dtype=np.int64)
        i = np.searchsorted(edges, np.asarray(true, dtype=np.int64), side="left")
        return edges[np.minimum(i, len(edges) - 1)]


def _lengths_value(value: Any) -> Any:
    """Accept ``exact`` (a plain kind) for ``{kind: exact}``."""
    if isinstance(value, str):
        return {"kind": value.strip()}
    return value


OutputLengths = Annotated[
    Annotated[ExactLengths | PredictedLengths | BucketedLengths, Field(discriminator="kind")],
    BeforeValidator(_lengths_value),
]
"""The type of ``kv_cache.output_lengths``: ``exact``, ``{kind: predicted, rel_error: 0.2}``
or ``{kind: bucketed, edges: [64, 256, 1024]}``."""


# ---------------------------------------------------------------------------- rules


class AdmissionSpec(StrictSpec):
    """Base of every admission rule's options. Subclasses set ``name`` to a ``Literal``;
    ``needs_lengths``: the rule reads the requests' (predicted) output lengths, so
    ``kv_cache.output_lengths`` must be given."""

    name: str
    needs_lengths: ClassVar[bool] = False

    @classmethod
    def from_option(cls, option: str) -> dict[str, Any]:
        """The options meant by the ``OPTION`` of ``NAME:OPTION`` (none by default)."""
        raise SpecError(
            "", f"admission {cls.model_fields['name'].default!r} takes no option {option!r}"
        )


class FCFSAdmission(AdmissionSpec):
    """The engine's default: prompts oldest first within a class, classes in the policy's
    order, while each whole prompt (and one token more) fits beside the decode growth and
    the watermark; the first that does not fit hides every prompt after it."""

    name: Literal["fcfs"] = "fcfs"


class MCSFAdmission(AdmissionSpec):
    """Memory-constrained shortest first (Jaillet, Jiang, Mellou, Molinaro, Podimata, Zhou):
    waiting requests by shortest predicted output, each admitted while the projected memory
    of every future batch (every running request growing a token per batch until its
    predicted end, no further arrivals) stays within the cache."""

    name: Literal["mc-sf"] = "mc-sf"
    needs_lengths: ClassVar[bool] = True


class WaitAdmission(AdmissionSpec):
    """WAIT, waiting for accumulated inference threshold (Ao, Luo, Simchi-Levi, Wang): the
    requests fall into types by output length; a type's oldest ``n_j`` waiting requests are
    admitted together once ``n_j`` of them wait.

    * ``types``: the types' upper output lengths (tokens, ascending; type ``j`` holds the
      lengths in ``(types[j-1], types[j]]``); the last must reach the longest output. Default:
      the bucket edges of ``output_lengths`` if bucketed, else the quartiles of the engine's
      output lengths.
    * ``thresholds``: ``n_j`` per type (requests). Default: from the fluid model, the smallest
      that keep up with each type's arrival rate (``docs/schedulers.md``).
    """

    name: Literal["wait"] = "wait"
    needs_lengths: ClassVar[bool] = True
    types: tuple[Annotated[int, Field(ge=1)], ...] | None = Field(
        None, min_length=1, description="tokens"
    )
    thresholds: tuple[Annotated[int, Field(ge=1)], ...] | None = Field(
        None, min_length=1, description="requests"
    )

    @model_validator(mode="after")
    def _consistent(self) -> WaitAdmission:
        if self.types is not None:
            _ascending(self.types, "types")
        if self.thresholds is not None and (
            self.types is None or len(self.types) != len(self.thresholds)
        ):
            have = "no types" if self.types is None else f"{len(self.types)} types"
            raise SpecError(
                "thresholds",
                f"{len(self.thresholds)} thresholds for {have}",
                "give types and one threshold per type, or drop thresholds",
            )
        return self


class NestedWaitAdmission(AdmissionSpec):
    """Nested WAIT (Ao, Luo, Simchi-Levi, Wang), for output lengths not known in advance:
    decoding is cut into segments at output lengths ``l'_1 < ... < l'_m``; every prompt
    enters segment 1 (the oldest ``n_1`` together, once ``n_1`` wait), and a request still
    running when it has decoded ``l'_{k-1}`` tokens is held back (it keeps its KV cache)
    until ``n_k`` requests wait there, then they resume together.

    * ``segments``: the segments' ends ``l'_1 < ... < l'_m`` (tokens); the last must reach the
      longest output. Default: WAIT's default types (the bucket edges of ``output_lengths`` if
      bucketed, else the quartiles of the engine's output lengths).
    * ``thresholds``: ``n_k`` per segment (requests). Default: from the fluid model, the
      smallest with ``Delta T(n) < n_1 / lambda`` and ``n_{k+1} > p_k n_k``
      (``docs/schedulers.md``).
    """

    name: Literal["nested-wait"] = "nested-wait"
    segments: tuple[Annotated[int, Field(ge=1)], ...] | None = Field(
        None, min_length=1, description="tokens"
    )
    thresholds: tuple[Annotated[int, Field(ge=1)], ...] | None = Field(
        None, min_length=1, description="requests"
    )

    @model_validator(mode="after")
    def _consistent(self) -> NestedWaitAdmission:
        if self.segments is not None:
            _ascending(self.segments, "segments")
        if self.thresholds is not None and (
            self.segments is None or len(self.segments) != len(self.thresholds)
        ):
            have = "no segments" if self.segments is None else f"{len(self.segments)} segments"
            raise SpecError(
                "thresholds",
                f"{len(self.thresholds)} thresholds for {have}",
                "give segments and one threshold per segment, or drop thresholds",
            )
        return self


_REGISTRY: SpecRegistry[AdmissionSpec] = SpecRegistry(
    AdmissionSpec, "admission rule", "e.g. mc-sf or {name: wait, types: [128, 1024]}"
)


def register_admission_spec(spec: type[AdmissionSpec]) -> type[AdmissionSpec]:
    """Make ``spec`` (an :class:`AdmissionSpec` subclass with a ``Literal`` name) valid as
    ``kv_cache.admission``. Registering a name again replaces it."""
    return _REGISTRY.register(spec)


def unregister_admission_spec(name: str) -> None:
    """Forget the admission rule spec ``name`` (a no-op for an unknown name)."""
    _REGISTRY.unregister(name)


def admission_names() -> tuple[str, ...]:
    """The registered admission rule names, in registration order."""
    return _REGISTRY.names()


for _spec in (FCFSAdmission, MCSFAdmission, WaitAdmission, NestedWaitAdmission):
    register_admission_spec(_spec)


def admission_spec(value: str | AdmissionSpec | dict[str, Any]) -> AdmissionSpec:
    """An admission rule spec from a name (``mc-sf``), a mapping or a spec (SpecError naming
    the field and the fix otherwise)."""
    return _REGISTRY.parse(value)


AdmissionField = Annotated[SerializeAsAny[AdmissionSpec], BeforeValidator(admission_spec)]
"""The type of ``kv_cache.admission``: a name, a mapping or a spec, validated against the
registered rules."""
