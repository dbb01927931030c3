"""Turn pydantic validation failures into one-line :class:`~policyopt.errors.SpecError` errors,
and the base class every spec derives from.

:func:`spec_error` is used by every spec that validates a nested part itself (scheduler specs)
and by :func:`policyopt.model.config.build`. :class:`StrictSpec` is the base of every spec
(engine, batch time, workload, lengths, run, scheduler, network engines, classes and
workflows): unknown keys are refused, specs are frozen, ``nan``/``inf`` are refused, and a
boolean given where a number is expected (``token_budget: true``, which pydantic would read
as 1) is refused naming the field.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Collection
from functools import cache
from typing import Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from policyopt.errors import SpecError

MAX_TOKEN_BUDGET = 1_048_576
"""The largest token budget accepted (``2**20`` tokens per batch; ``docs/model.md``).

The simulators keep a table of the batch time of every batch size up to the budget, and the
capacity solvers evaluate ``n / t(n)`` at every ``n <= b``: at ``2**20`` that is about 50 MB
and a fraction of a second, at ``10**12`` it would be terabytes. Real engines batch thousands
to tens of thousands of tokens, so the bound leaves two orders of magnitude of room.
"""

MAX_LENGTH = 1_048_576
"""The largest ``max_prompt_len`` / ``max_output_len`` accepted (a context of ``2**20``
tokens): a length distribution is a table over ``1 .. max_len``."""

MAX_SAMPLES = 1_000_000
"""The largest ``run.samples`` accepted: the time series hold that many points each."""


def _at_most(limit: int, unit: str, why: str) -> AfterValidator:
    def check(value: int) -> int:
        if value > limit:
            raise SpecError(
                "",
                f"{value} {unit} is above the limit of {limit:,} ({why})",
                f"use at most {limit} (docs/model.md)",
            )
        return value

    return AfterValidator(check)


TokenBudget = typing.Annotated[
    int,
    Field(ge=1),
    _at_most(
        MAX_TOKEN_BUDGET,
        "tokens",
        "the simulator tabulates the batch time of every batch size up to the budget",
    ),
]
"""A token budget: a whole number of tokens from 1 to :data:`MAX_TOKEN_BUDGET`."""

MaxLength = typing.Annotated[
    int, Field(ge=1), _at_most(MAX_LENGTH, "tokens", "a length distribution is a table over 1..max")
]
"""A maximum prompt or output length: 1 to :data:`MAX_LENGTH` tokens."""

Samples = typing.Annotated[
    int, Field(ge=20), _at_most(MAX_SAMPLES, "samples", "each time series holds that many points")
]
"""Points of a run's time series: 20 to :data:`MAX_SAMPLES`."""


def _leaf_types(annotation: Any) -> set[Any]:
    """The types a field annotation is made of (unions, containers and ``Annotated`` opened)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    if origin is None:
        return {annotation}
    leaves: set[Any] = set()
    if origin not in (typing.Union, types.UnionType):
        leaves.add(origin)
    for arg in typing.get_args(annotation):
        if arg is not Ellipsis:
            leaves |= _leaf_types(arg)
    return leaves


@cache
def _number_fields(cls: type[BaseModel]) -> frozenset[str]:
    """Fields of ``cls`` whose annotation holds numbers (``int``/``float``, alone, optional or
    in a list or mapping) and does not admit ``bool``; nested specs check their own fields."""
    names = set()
    for name, info in cls.model_fields.items():
        leaves = _leaf_types(info.annotation)
        if bool in leaves or any(isinstance(t, type) and issubclass(t, BaseModel) for t in leaves):
            continue
        if leaves & {int, float}:
            names.add(name)
    return frozenset(names)


def _a_bool(value: Any) -> bool | None:
    """The first boolean in ``value`` (itself, or an item of a list or a mapping's value)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _a_bool(item)
            if found is not None:
                return found
    return None


class StrictSpec(BaseModel):
    """Base of every spec: frozen, unknown keys and ``nan``/``inf`` refused, and no boolean
    where a number is expected (``true is not a number``, naming the field)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in _number_fields(cls):
                found = _a_bool(data.get(name))
                if found is not None:
                    word = "true" if found else "false"
                    raise SpecError(name, f"{word} is not a number", "give a number")
        return data


_FIXES = {
    "extra_forbidden": "unknown key; remove it or fix its spelling",
    "missing": "add it",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than_equal": "use a smaller value",
    "literal_error": "choose one of those",
    "union_tag_invalid": "choose one of those kinds",
    "union_tag_not_found": "add a 'kind' key",
    "int_parsing": "give a whole number",
    "int_from_float": "give a whole number",
    "float_parsing": "give a number",
    "bool_parsing": "give true or false",
    "model_type": "give a mapping of keys to values",
}


def spec_error(err: ValidationError, prefix: str = "", tags: Collection[str] = ()) -> SpecError:
    """The first problem of a pydantic ``ValidationError`` as a :class:`SpecError`.

    ``prefix`` goes before the field path; ``tags`` are extra discriminated-union tags to
    drop from the location (scheduler names: the built-in kinds are always dropped).
    """
    first = err.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if not str(p).startswith("function-")]
    # discriminated unions insert the tag in the location: drop it
    loc = [p for p in loc if p not in _UNION_TAGS and p not in tags]
    field = ".".join(([prefix] if prefix else []) + loc)
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, SpecError):
        field = ".".join(x for x in (field, cause.field) if x)
        return SpecError(field, cause.problem, cause.fix)
    msg = str(first.get("msg", "invalid value"))
    for head in ("Value error, ", "Assertion failed, "):
        if msg.startswith(head):
            msg = msg[len(head) :]
    kind = str(first.get("type", ""))
    value = first.get("input")
    if kind == "extra_forbidden":
        msg = "unknown key"
        fix = "remove it or fix its spelling"
    else:
        fix = _FIXES.get(kind, "")
        if isinstance(value, (int, float, str, bool)) and kind not in ("missing", "value_error"):
            msg += f" (got {value!r})"
    return SpecError(field or "config", msg, fix)


_UNION_TAGS = {
    "constant",
    "uniform",
    "geometric",
    "lognormal",
    "empirical",
    "poisson",
    "deterministic",
    "trace",
    "renewal",
    "mmpp",
    "piecewise",
    "staircase",
    "affine",
    "exact",
    "predicted",
    "bucketed",
}
