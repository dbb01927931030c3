"""Batch-time models: how long one forward pass (one batch) takes.

Three models, all returning **seconds** for a batch:

* ``staircase``: ``t = c + a * ceil(n / b0)`` with ``n`` the tokens in the batch. The default is
  the paper's profile of CodeLlama-34B on one A100-80GB: ``c = 11.28 ms``, ``a = 35.47 ms``,
  ``b0 = 128``, so ``t(512) = 153.16 ms``.
* ``piecewise``: ``t = c + a * max(0, n - b0)`` (the paper's first version; ``a`` per token).
* ``affine``: ``t = c + cp * prefill_tokens + cd * decode_tokens + ckv * kv_tokens_read``, fit by
  least squares from a profile (:func:`fit_affine`). It remembers the largest batch it was fit
  on; the simulator counts batches beyond that range and reports them (it does not clamp).

Parameters are given in milliseconds (``*_ms`` fields), as profiles are.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from policyopt.errors import SpecError
from policyopt.model.files import csv_reader, read_text, require_columns, rows_of
from policyopt.model.validation import StrictSpec


class _Spec(StrictSpec):
    """Base of this module's specs (:class:`StrictSpec`: frozen, strict keys and numbers)."""


class StaircaseBatchTime(_Spec):
    """``t(n) = c + a * ceil(n / b0)`` milliseconds, ``n`` = tokens in the batch."""

    kind: Literal["staircase"] = "staircase"
    c_ms: float = Field(11.28, ge=0, description="fixed cost per batch, ms")
    a_ms: float = Field(35.47, gt=0, description="cost per step of b0 tokens, ms")
    b0: int = Field(128, ge=1, description="tokens per step")

    @property
    def depends_on_mix(self) -> bool:
        return False

    def seconds_for_tokens(self, n: np.ndarray) -> np.ndarray:
        """Batch time in seconds for batches of ``n`` tokens (vectorized)."""
        n = np.asarray(n)
        return (self.c_ms + self.a_ms * np.ceil(n / self.b0)) / 1000.0

    def seconds(self, prefill: int, decode: int, kv_read: int = 0) -> float:
        """Batch time in seconds of one batch."""
        return (self.c_ms + self.a_ms * math.ceil((prefill + decode) / self.b0)) / 1000.0


class PiecewiseBatchTime(_Spec):
    """``t(n) = c + a * max(0, n - b0)`` milliseconds: flat up to ``b0`` tokens, then linear."""

    kind: Literal["piecewise"] = "piecewise"
    c_ms: float = Field(..., gt=0, description="batch time up to b0 tokens, ms")
    a_ms: float = Field(..., gt=0, description="extra time per token beyond b0, ms")
    b0: int = Field(..., ge=0, description="tokens processed at the flat cost")

    @property
    def depends_on_mix(self) -> bool:
        return False

    def seconds_for_tokens(self, n: np.ndarray) -> np.ndarray:
        n = np.asarray(n)
        return (self.c_ms + self.a_ms * np.maximum(0, n - self.b0)) / 1000.0

    def seconds(self, prefill: int, decode: int, kv_read: int = 0) -> float:
        return (self.c_ms + self.a_ms * max(0, prefill + decode - self.b0)) / 1000.0


class AffineBatchTime(_Spec):
    """``t = c + cp*prefill + cd*decode + ckv*kv_read`` milliseconds.

    ``kv_read`` is the KV-cache tokens the batch attends over: the context already held by
    each decoding request in the batch, plus the already-prefilled part of each prefill chunk's
    request. ``max_tokens`` and ``max_kv`` record the profiled range (``None``: unknown).
    """

    kind: Literal["affine"] = "affine"
    c_ms: float = Field(..., ge=0)
    cp_ms: float = Field(..., ge=0, description="ms per prefill token")
    cd_ms: float = Field(..., ge=0, description="ms per decode token")
    ckv_ms: float = Field(0.0, ge=0, description="ms per KV token read")
    max_tokens: int | None = Field(None, ge=1, description="largest batch in the profile")
    max_kv: int | None = Field(None, ge=0, description="largest KV read in the profile")

    @model_validator(mode="after")
    def _positive_time(self) -> AffineBatchTime:
        if self.c_ms <= 0 and min(self.cp_ms, self.cd_ms) <= 0:
            raise SpecError(
                "c_ms",
                "0 with cp_ms or cd_ms 0: a one-token batch would take no time",
                "use c_ms > 0",
            )
        return self

    @property
    def depends_on_mix(self) -> bool:
        return True

    def seconds(self, prefill: int, decode: int, kv_read: int = 0) -> float:
        return (
            self.c_ms + self.cp_ms * prefill + self.cd_ms * decode + self.ckv_ms * kv_read
        ) / 1000.0

    def seconds_for_tokens(self, n: np.ndarray, prefill_share: float = 0.5) -> np.ndarray:
        """Time of ``n``-token batches with a fixed prefill share and no KV reads."""
        n = np.asarray(n, dtype=float)
        per_token = prefill_share * self.cp_ms + (1 - prefill_share) * self.cd_ms
        return (self.c_ms + per_token * n) / 1000.0

    def in_range(self, tokens: int, kv_read: int) -> bool:
        """Whether a batch lies inside the profiled range."""
        if self.max_tokens is not None and tokens > self.max_tokens:
            return False
        return not (self.max_kv is not None and kv_read > self.max_kv)


BatchTime = Annotated[
    StaircaseBatchTime | PiecewiseBatchTime | AffineBatchTime,
    Field(discriminator="kind"),
]


def fit_affine(path: str | Path) -> tuple[AffineBatchTime, dict[str, float]]:
    """Fit the affine batch-time model to a profile CSV by least squares.

    The CSV has a header with columns ``prefill_tokens``, ``decode_tokens``, ``time_ms`` and
    optionally ``kv_tokens`` (KV tokens read). Returns the model and fit diagnostics
    (``r2``, ``rmse_ms``, ``rows``). Raises :class:`SpecError` naming the line of a bad row.
    """
    path = Path(path)
    text = read_text(path, "a profile CSV", "give the path of a profile CSV")
    rows: list[tuple[float, float, float, float]] = []
    reader = csv_reader(path, text)
    cols = require_columns(
        path,
        reader,
        ["prefill_tokens", "decode_tokens", "time_ms"],
        "the header must name prefill_tokens, decode_tokens, time_ms and optionally kv_tokens",
    )
    has_kv = "kv_tokens" in cols
    for lineno, row in rows_of(path, reader):
        try:
            p = float(row["prefill_tokens"])
            d = float(row["decode_tokens"])
            t = float(row["time_ms"])
            kv = float(row["kv_tokens"]) if has_kv else 0.0
        except (TypeError, ValueError):
            raise SpecError(
                f"{path} line {lineno}",
                f"not a number in row {dict(row)}",
                "every field must be a number",
            ) from None
        for name, value in (("prefill_tokens", p), ("decode_tokens", d), ("time_ms", t)) + (
            (("kv_tokens", kv),) if has_kv else ()
        ):
            if not math.isfinite(value):
                raise SpecError(
                    f"{path} line {lineno}",
                    f"{name}={row[name].strip()} is not a finite number",
                    "fix or remove the row (a profile has no nan or inf)",
                )
        if min(p, d, kv) < 0 or t <= 0 or p + d <= 0:
            raise SpecError(
                f"{path} line {lineno}",
                "token counts must be >= 0 with at least one token, and time_ms > 0",
                "fix or remove the row",
            )
        rows.append((p, d, kv, t))
    if len(rows) < (4 if has_kv else 3):
        raise SpecError(str(path), f"only {len(rows)} data rows", "profile at least 4 batches")
    data = np.array(rows)
    design = np.column_stack([np.ones(len(data)), data[:, 0], data[:, 1]])
    if has_kv:
        design = np.column_stack([design, data[:, 2]])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise SpecError(
            str(path),
            "the profile does not vary prefill, decode (and kv) tokens independently",
            "profile batches with different prefill/decode mixes",
        )
    coef, *_ = np.linalg.lstsq(design, data[:, 3], rcond=None)
    fitted = design @ coef
    resid = data[:, 3] - fitted
    ss_tot = float(np.sum((data[:, 3] - data[:, 3].mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 1.0
    clipped = [float(max(0.0, c)) for c in coef]
    negative = [
        n for n, c in zip(["c_ms", "cp_ms", "cd_ms", "ckv_ms"], coef, strict=False) if c < 0
    ]
    model = AffineBatchTime(
        c_ms=clipped[0] if clipped[0] > 0 else 1e-6,
        cp_ms=clipped[1],
        cd_ms=clipped[2],
        ckv_ms=clipped[3] if has_kv else 0.0,
        max_tokens=int(np.max(data[:, 0] + data[:, 1])),
        max_kv=int(np.max(data[:, 2])) if has_kv else None,
    )
    diag = {
        "rows": float(len(data)),
        "r2": r2,
        "rmse_ms": float(np.sqrt(np.mean(resid**2))),
        "negative_coefficients_set_to_zero": float(len(negative)),
    }
    return model, diag
