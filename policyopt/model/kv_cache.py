"""The KV cache of an engine: how many tokens of context it can hold, and what the engine does
when it runs out.

A resident request holds the KV entries of its computed prompt tokens and of its decoded tokens.
The cache holds ``M`` tokens in blocks of ``block_size`` tokens (paged allocation: a request
takes whole blocks). ``M`` is given directly (``tokens``) or derived from the GPU (``gpu``)::

    M = floor((memory_gib * 2**30 * utilization - params_billion * 1e9 * weight_bytes)
              / (layers * kv_heads * head_dim * 2 * kv_bytes))

(the factor 2: a key and a value per head), rounded down to whole blocks. The defaults are
CodeLlama-34B (48 layers, 8 KV heads of dimension 128, 33.74 billion parameters in 16-bit
floats) on an 80 GiB A100 with 90% of its memory given to the engine: 196,608 bytes of KV per
token and 49,994 tokens, 49,984 in 3,124 blocks of 16. ``docs/model.md`` works the example through.

The engine's rules with a limited cache (``docs/schedulers.md``, memory): a prompt is admitted
when the blocks of its whole prompt are free (beyond ``watermark`` of the blocks, kept free for
decode growth); a decode that needs a new block when none is free preempts the most recently
admitted request, which gives back its blocks and either recomputes (its prompt and decoded
tokens are prefilled again) or is swapped out to host memory and back at ``swap_s_per_token``
seconds per token each way.

Which waiting prompts may take blocks is the cache's admission rule (``admission``, default
``fcfs``, the rule above; :mod:`policyopt.model.admission`); rules that rank requests by
their output length need ``output_lengths``, what the engine knows of them.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from policyopt.errors import SpecError
from policyopt.model.admission import (
    AdmissionField,
    BucketedLengths,
    FCFSAdmission,
    NestedWaitAdmission,
    OutputLengths,
    WaitAdmission,
)
from policyopt.model.validation import StrictSpec


class GPUMemory(StrictSpec):
    """A GPU and a model, from which the KV-cache size follows (defaults: CodeLlama-34B on an
    80 GiB A100).

    * ``memory_gib``: the GPU's memory (GiB); ``utilization``: the share of it the engine uses;
    * ``params_billion`` and ``weight_bytes``: the model's weights (billions of parameters,
      bytes each);
    * ``layers``, ``kv_heads``, ``head_dim``, ``kv_bytes``: the KV entries of one token, a key
      and a value of ``head_dim`` numbers of ``kv_bytes`` bytes per KV head per layer.
    """

    memory_gib: float = Field(80.0, gt=0, description="GiB")
    utilization: float = Field(0.9, gt=0, le=1)
    params_billion: float = Field(33.74, ge=0, description="billions of parameters")
    weight_bytes: float = Field(2.0, gt=0, description="bytes per parameter")
    layers: int = Field(48, ge=1)
    kv_heads: int = Field(8, ge=1)
    head_dim: int = Field(128, ge=1)
    kv_bytes: float = Field(2.0, gt=0, description="bytes per KV number")

    @property
    def kv_bytes_per_token(self) -> float:
        """Bytes of KV cache one token takes: layers x KV heads x head dim x 2 x bytes."""
        return self.layers * self.kv_heads * self.head_dim * 2 * self.kv_bytes

    @property
    def free_bytes(self) -> float:
        """Bytes left for the KV cache: the engine's share of memory minus the weights."""
        return self.memory_gib * 2**30 * self.utilization - self.params_billion * 1e9 * (
            self.weight_bytes
        )

    def tokens(self) -> int:
        """KV-cache tokens this GPU holds for this model (before rounding to blocks)."""
        free = self.free_bytes
        if free <= 0:
            raise SpecError(
                "gpu",  # relative: the engine's location goes before it
                f"the weights ({self.params_billion * self.weight_bytes:g} GB) fill the "
                f"{self.memory_gib * self.utilization:g} GiB the engine may use",
                "give a larger memory_gib or utilization, or a smaller model",
            )
        return math.floor(free / self.kv_bytes_per_token)


class KVCacheSpec(StrictSpec):
    """A limited KV cache (``docs/model.md``).

    * ``tokens`` (``M``): tokens of KV the cache holds; or ``gpu``: derive it from a GPU and a
      model (:class:`GPUMemory`). One of the two.
    * ``block_size``: tokens per block; a request holds whole blocks (1: no rounding).
    * ``watermark``: share of the blocks a new prompt may not take (left for decode growth).
    * ``preemption``: ``recompute`` (the preempted request's KV is dropped and prefilled again)
      or ``swap`` (moved to host memory and back, ``swap_s_per_token`` seconds per token each
      way, added to the batch during which it moves).
    * ``admission``: which waiting prompts may take blocks (``fcfs``, ``mc-sf``, ``wait``,
      ``nested-wait`` or a mapping with the rule's options; :mod:`policyopt.model.admission`).
    * ``output_lengths``: what the engine knows of each request's output length (``exact``,
      ``predicted`` or ``bucketed``); needed by ``mc-sf`` and ``wait``.
    """

    tokens: int | None = Field(None, ge=1, description="tokens (M)")
    gpu: GPUMemory | None = None
    block_size: int = Field(16, ge=1, description="tokens per block")
    watermark: float = Field(0.0, ge=0, lt=1, description="share of blocks")
    preemption: Literal["recompute", "swap"] = "recompute"
    swap_s_per_token: float = Field(1e-6, ge=0, description="seconds per token")
    admission: AdmissionField = Field(default_factory=FCFSAdmission)
    output_lengths: OutputLengths | None = None

    @model_validator(mode="after")
    def _one_size(self) -> KVCacheSpec:
        if (self.tokens is None) == (self.gpu is None):
            raise SpecError(
                "",  # the cache itself, named by its location (engine.kv_cache)
                "give the cache's size as tokens, or a gpu to derive it from (not both)",
                "set kv_cache.tokens: 50000, or kv_cache.gpu: {} for the default GPU",
            )
        if self.blocks < 1:
            raise SpecError(
                "block_size",
                f"{self.block_size} tokens is more than the whole cache ({self.raw_tokens})",
                "give a smaller block_size",
            )
        if self.admission.needs_lengths and self.output_lengths is None:
            raise SpecError(
                "output_lengths",
                f"admission {self.admission.name!r} needs the requests' output lengths",
                "set kv_cache.output_lengths: exact (or {kind: predicted, rel_error: 0.2}, "
                "or {kind: bucketed, edges: [...]})",
            )
        return self

    @property
    def raw_tokens(self) -> int:
        """The cache's size before rounding down to whole blocks (tokens)."""
        return int(self.tokens) if self.tokens is not None else self.gpu.tokens()  # type: ignore[union-attr]

    @property
    def blocks(self) -> int:
        """Blocks in the cache."""
        return self.raw_tokens // self.block_size

    @property
    def capacity(self) -> int:
        """``M``: tokens the cache holds in whole blocks."""
        return self.blocks * self.block_size

    @property
    def watermark_blocks(self) -> int:
        """Blocks a new prompt may not take."""
        return int(self.watermark * self.blocks)

    def blocks_for(self, tokens: int) -> int:
        """Blocks that hold ``tokens`` tokens."""
        return -(-int(tokens) // self.block_size)

    def check_request(self, prompt: int, output: int, field: str) -> None:
        """Refuse a cache that can never finish a request of ``prompt`` + ``output`` tokens,
        and output-length buckets, types or segments that stop short of ``output`` tokens."""
        need = self.blocks_for(prompt + output)
        room = self.blocks
        if need > room or self.blocks_for(prompt + 1) > room:
            raise SpecError(
                field,
                f"a request of {prompt} prompt + {output} output tokens needs "
                f"{need * self.block_size} tokens of KV cache and the cache holds "
                f"{self.capacity}: it could never finish",
                f"raise kv_cache.tokens to >= {need * self.block_size}, or "
                "lower max_prompt_len / max_output_len",
            )
        lengths, rule = self.output_lengths, self.admission
        for edges, where in (
            (lengths.edges if isinstance(lengths, BucketedLengths) else None, "output_lengths"),
            (rule.types if isinstance(rule, WaitAdmission) else None, "admission.types"),
            (
                rule.segments if isinstance(rule, NestedWaitAdmission) else None,
                "admission.segments",
            ),
        ):
            if edges is not None and edges[-1] < output:
                raise SpecError(
                    f"{field}.{where}",
                    f"the last edge ({edges[-1]} tokens) is below the longest output "
                    f"({output} tokens)",
                    f"end the list with an edge >= {output}",
                )
