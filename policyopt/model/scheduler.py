"""Batching schedulers as a user declares them: a name and its options.

A scheduler spec is data: which scheduler, with which options, and four facts about the
batches it forms that the rest of the model needs (can it run a prompt longer than the token
budget; does it mix prefill and decode tokens; which phase it serves first; does it batch at
request level). How the batch is formed lives with the simulators
(:mod:`policyopt.sim.schedulers`), one module per scheduler; ``docs/schedulers.md`` writes
each rule out.

==================  ==========  =======  =======  =============
name                priority    mixes    chunks   request-level
==================  ==========  =======  =======  =============
fastertransformer   decode      no       no       yes
vllm                prefill     no       no       no
orca                prefill     yes      yes*     no
sarathi             decode      yes      yes*     no
==================  ==========  =======  =======  =============

``*`` ``chunked: false`` (or the name ``orca:whole``) gives whole-prompt admission.

Scenario and network files validate a scheduler as a pydantic discriminated union on
``name`` over the registered specs (:func:`register_scheduler_spec`), so an unknown option
is refused with the field's name. A spec may be written as a mapping
(``{name: orca, chunked: false}``) or as a string ``NAME`` or ``NAME:OPTION`` (the option
words a spec understands are its :meth:`SchedulerSpec.from_option`).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, SerializeAsAny, model_validator

from policyopt.errors import SpecError
from policyopt.model.registry import SpecRegistry
from policyopt.model.validation import StrictSpec


class SchedulerSpec(StrictSpec):
    """Base of every scheduler's options. Subclasses set ``name`` to a ``Literal``.

    The class attributes say how the scheduler batches (they are facts of the scheduler,
    not options): ``decode_first``, ``mixes``, ``request_level``; :attr:`chunks` may depend
    on an option.
    """

    name: str

    decode_first: ClassVar[bool] = False
    """Decode tokens take the budget before prefill tokens."""
    mixes: ClassVar[bool] = False
    """Prefill and decode tokens may share a batch."""
    request_level: ClassVar[bool] = False
    """New requests join only when the whole running group has left."""

    @property
    def chunks(self) -> bool:
        """A prompt may be split across batches (so prompts longer than the budget run)."""
        return False

    @property
    def label(self) -> str:
        """Display name."""
        return self.name

    @classmethod
    def from_option(cls, option: str) -> dict[str, Any]:
        """The options meant by the ``OPTION`` of ``NAME:OPTION`` (raise SpecError if none)."""
        raise SpecError("", f"{cls.model_fields['name'].default!r} takes no option {option!r}")


class _PrefillOptionSpec(SchedulerSpec):
    """A scheduler with the ``chunked`` option (``NAME:whole``, ``NAME:chunked``)."""

    chunked: bool | None = None

    @classmethod
    def from_option(cls, option: str) -> dict[str, Any]:
        if option in ("whole", "chunked"):
            return {"chunked": option == "chunked"}
        raise SpecError(
            "", f"unknown scheduler option {option!r}", "use NAME, NAME:whole or NAME:chunked"
        )


class _ChunkingSpec(_PrefillOptionSpec):
    """A scheduler that chunks prefill by default; ``chunked: false`` admits whole prompts."""

    @property
    def chunks(self) -> bool:
        return self.chunked is not False

    @property
    def label(self) -> str:
        return f"{self.name}(whole)" if self.chunked is False else self.name


class _WholePromptSpec(_PrefillOptionSpec):
    """A scheduler that never chunks prefill: ``chunked: true`` is refused with the fix."""

    @model_validator(mode="after")
    def _no_chunking(self) -> _WholePromptSpec:
        if self.chunked:
            raise SpecError(
                "chunked",
                f"{self.name} has no chunked prefill",
                "drop chunked, or use orca or sarathi",
            )
        return self


class FasterTransformerSpec(_WholePromptSpec):
    """FasterTransformer: request-level batching, decode first, whole prompts."""

    name: Literal["fastertransformer"] = "fastertransformer"
    decode_first: ClassVar[bool] = True
    request_level: ClassVar[bool] = True


class VLLMSpec(_WholePromptSpec):
    """Vanilla vLLM: prefill-only batches of whole prompts first, else decode-only batches."""

    name: Literal["vllm"] = "vllm"


class OrcaSpec(_ChunkingSpec):
    """Orca: prefill first, mixed batches, chunked prefill unless ``chunked: false``."""

    name: Literal["orca"] = "orca"
    mixes: ClassVar[bool] = True


class SarathiSpec(_ChunkingSpec):
    """Sarathi-Serve: decode first, then prefill chunks, mixed batches."""

    name: Literal["sarathi"] = "sarathi"
    decode_first: ClassVar[bool] = True
    mixes: ClassVar[bool] = True


_REGISTRY: SpecRegistry[SchedulerSpec] = SpecRegistry(
    SchedulerSpec, "scheduler", "e.g. sarathi or {name: orca}"
)


def register_scheduler_spec(spec: type[SchedulerSpec]) -> type[SchedulerSpec]:
    """Make ``spec`` (a :class:`SchedulerSpec` subclass with a ``Literal`` name) valid in
    scenario and network files. Registering a name again replaces it."""
    return _REGISTRY.register(spec)


def unregister_scheduler_spec(name: str) -> None:
    """Forget the scheduler spec ``name`` (a no-op for an unknown name)."""
    _REGISTRY.unregister(name)


def scheduler_names() -> tuple[str, ...]:
    """The registered scheduler names, in registration order."""
    return _REGISTRY.names()


SCHEDULER_NAMES = ("fastertransformer", "vllm", "orca", "sarathi")
"""The built-in schedulers (the paper's four)."""


for _spec in (FasterTransformerSpec, VLLMSpec, OrcaSpec, SarathiSpec):
    register_scheduler_spec(_spec)


def scheduler_spec(value: str | SchedulerSpec | dict[str, Any]) -> SchedulerSpec:
    """A scheduler spec from a name (``orca``, ``orca:whole``), a mapping, or a spec.

    Raises :class:`SpecError` naming the field (``name``, ``chunked``, an unknown key) and
    the fix.
    """
    return _REGISTRY.parse(value)


def default_scheduler() -> SchedulerSpec:
    """The default scheduler: Sarathi-Serve (chunked prefill, decode first)."""
    return SarathiSpec()


SchedulerField = Annotated[SerializeAsAny[SchedulerSpec], BeforeValidator(scheduler_spec)]
"""The type of a ``scheduler`` field: a name, ``NAME:OPTION``, a mapping or a spec, validated
against the registered specs (serialized with the spec's own options)."""
