"""The engine: token budget, optional batch-size limit, and batch-time model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from policyopt.model.batch_time import BatchTime, StaircaseBatchTime


class EngineSpec(BaseModel):
    """One LLM inference engine.

    * ``token_budget`` (``b``): at most this many tokens per batch (vLLM's
      ``max_num_batched_tokens``).
    * ``max_seqs`` (``k_max``): optionally, at most this many requests per batch (vLLM's
      ``max_num_seqs``); a prefill chunk takes one request slot, as a decode token does.
    * ``batch_time``: how long a batch takes; default the paper's CodeLlama-34B/A100 staircase.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    token_budget: int = Field(512, ge=1, description="tokens per batch (b)")
    max_seqs: int | None = Field(None, ge=1, description="requests per batch (k_max)")
    batch_time: BatchTime = Field(default_factory=StaircaseBatchTime)
