"""The engine: token budget, optional batch-size limit, and batch-time model."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from policyopt.model.batch_time import AffineBatchTime, BatchTime, StaircaseBatchTime
from policyopt.model.kv_cache import KVCacheSpec
from policyopt.model.validation import StrictSpec, TokenBudget


class EngineSpec(StrictSpec):
    """One LLM inference engine.

    * ``token_budget`` (``b``): at most this many tokens per batch (vLLM's
      ``max_num_batched_tokens``).
    * ``max_seqs`` (``k_max``): optionally, at most this many requests per batch (vLLM's
      ``max_num_seqs``); a prefill chunk takes one request slot, as a decode token does.
    * ``batch_time``: how long a batch takes; default the paper's CodeLlama-34B/A100 staircase.
    * ``kv_cache``: optionally, a limited KV cache (:class:`KVCacheSpec`): admission,
      preemption and the memory bound of the capacity; unlimited when absent.
    """

    token_budget: TokenBudget = Field(512, description="tokens per batch (b)")
    max_seqs: int | None = Field(None, ge=1, description="requests per batch (k_max)")
    batch_time: BatchTime = Field(default_factory=StaircaseBatchTime)
    kv_cache: KVCacheSpec | None = None

    def batch_seconds(self, n: np.ndarray, prefill_share: float = 0.5) -> np.ndarray:
        """Seconds of batches of ``n`` tokens (vectorized).

        The ``affine`` model is evaluated at the given prefill share with no KV reads; the
        other models do not depend on the mix.
        """
        bt = self.batch_time
        if isinstance(bt, AffineBatchTime):
            return bt.seconds_for_tokens(n, prefill_share)
        return bt.seconds_for_tokens(n)

    def token_capacity(self, prefill_share: float = 0.5) -> tuple[float, int]:
        """``(mu, n*)``: ``mu = max_{1 <= n <= b} n / t(n)`` tokens/s and the ``n`` reaching it.

        The largest token rate any scheduler can sustain on this engine (Theorem 2 of Li, Dai,
        Peng, arXiv 2504.07347; ``docs/capacity.md``). Ties go to the smallest ``n``. The
        request-slot limit ``max_seqs`` is not applied here: it can only lower the capacity,
        which the solvers compute from the batch-size region.
        """
        n = np.arange(1, self.token_budget + 1)
        rate = n / self.batch_seconds(n, prefill_share)
        best = int(np.argmax(rate))
        return float(rate[best]), int(n[best])
