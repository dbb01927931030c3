"""Turn pydantic validation failures into one-line :class:`~policyopt.errors.SpecError` errors.

Used by every spec that validates a nested part itself (scheduler specs) and by
:func:`policyopt.model.config.build`.
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import ValidationError

from policyopt.errors import SpecError

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
    "staircase",
    "piecewise",
    "affine",
}
