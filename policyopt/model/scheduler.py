"""Batching schedulers of real engines, as the paper stylizes them (DESIGN 2.1).

A scheduler here is a declaration: four properties that fix how a batch is formed. The
simulator implements the rule; ``docs/schedulers.md`` writes each rule out.

==================  ==========  =======  =======  =============
name                priority    mixes    chunks   request-level
==================  ==========  =======  =======  =============
fastertransformer   decode      no       no       yes
vllm                prefill     no       no       no
orca                prefill     yes      yes*     no
sarathi             decode      yes      yes*     no
==================  ==========  =======  =======  =============

``*`` ``chunked=False`` gives whole-prompt admission (the original Orca).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from policyopt.errors import SpecError

SCHEDULER_NAMES = ("fastertransformer", "vllm", "orca", "sarathi")
SchedulerName = Literal["fastertransformer", "vllm", "orca", "sarathi"]


class SchedulerSpec(BaseModel):
    """A batching scheduler: ``name`` and, for ``orca``/``sarathi``, ``chunked``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: SchedulerName
    chunked: bool | None = None

    @model_validator(mode="after")
    def _chunk_option(self) -> SchedulerSpec:
        if self.chunked and self.name in ("fastertransformer", "vllm"):
            raise SpecError(
                "chunked",
                f"{self.name} has no chunked prefill",
                "drop chunked, or use orca or sarathi",
            )
        return self

    @property
    def decode_first(self) -> bool:
        """Decode tokens take the budget before prefill tokens."""
        return self.name in ("fastertransformer", "sarathi")

    @property
    def mixes(self) -> bool:
        """Prefill and decode tokens may share a batch."""
        return self.name in ("orca", "sarathi")

    @property
    def chunks(self) -> bool:
        """A prompt may be split across batches."""
        if self.name in ("orca", "sarathi"):
            return self.chunked is not False
        return False

    @property
    def request_level(self) -> bool:
        """New requests join only when the whole running group has left."""
        return self.name == "fastertransformer"

    @property
    def label(self) -> str:
        """Display name (``orca(whole)`` for unchunked orca)."""
        if self.name in ("orca", "sarathi") and self.chunked is False:
            return f"{self.name}(whole)"
        return self.name


def scheduler_spec(value: str | SchedulerSpec | dict) -> SchedulerSpec:
    """A :class:`SchedulerSpec` from a name (``orca``, ``orca:whole``), a dict, or a spec."""
    if isinstance(value, SchedulerSpec):
        return value
    if isinstance(value, dict):
        return SchedulerSpec(**value)
    name, _, option = value.partition(":")
    if option not in ("", "whole", "chunked"):
        raise SpecError(
            "", f"unknown scheduler option {option!r}", "use NAME, NAME:whole or NAME:chunked"
        )
    chunked = None if not option else option == "chunked"
    return SchedulerSpec(name=name, chunked=chunked)  # type: ignore[arg-type]
