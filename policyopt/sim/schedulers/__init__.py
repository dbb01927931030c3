"""The scheduler registry: a scheduler's name maps to its options spec and its class.

One module per scheduler, one line to register it::

    register_scheduler(MySpec, MyScheduler)

``MySpec`` is a :class:`~policyopt.model.scheduler.SchedulerSpec` subclass with
``name: Literal["mine"] = "mine"`` (and any options as fields); ``MyScheduler`` a
:class:`~policyopt.sim.schedulers.base.Scheduler` subclass whose ``form`` returns the next
batch. After that line, scenario and network files accept ``scheduler: mine`` and both
simulators run it.
"""

from __future__ import annotations

from policyopt.model.scheduler import (
    FasterTransformerSpec,
    OrcaSpec,
    SarathiSpec,
    SchedulerSpec,
    VLLMSpec,
    register_scheduler_spec,
    scheduler_spec,
    unregister_scheduler_spec,
)
from policyopt.sim.schedulers.base import BatchPlan, Queues, Scheduler, fill_decode, fill_prefill
from policyopt.sim.schedulers.fastertransformer import FasterTransformer
from policyopt.sim.schedulers.orca import Orca
from policyopt.sim.schedulers.sarathi import Sarathi
from policyopt.sim.schedulers.vllm import VLLM

SCHEDULERS: dict[str, type[Scheduler]] = {}
"""Scheduler classes by name."""


def register_scheduler(spec: type[SchedulerSpec], scheduler: type[Scheduler]) -> None:
    """Register a scheduler: its options ``spec`` (valid in files from now on) and the
    ``scheduler`` class that forms its batches. Registering a name again replaces it."""
    register_scheduler_spec(spec)
    SCHEDULERS[spec.model_fields["name"].default] = scheduler


def unregister_scheduler(name: str) -> None:
    """Forget scheduler ``name`` (its spec and its class); files naming it are refused again."""
    unregister_scheduler_spec(name)
    SCHEDULERS.pop(name, None)


def make_scheduler(spec: str | SchedulerSpec | dict) -> Scheduler:
    """The scheduler object for a spec (a name such as ``orca:whole``, a mapping, a spec)."""
    spec = scheduler_spec(spec)
    cls = SCHEDULERS.get(spec.name)
    if cls is None:
        raise KeyError(f"scheduler {spec.name!r} has a spec but no class: register_scheduler")
    return cls(spec)


register_scheduler(FasterTransformerSpec, FasterTransformer)
register_scheduler(VLLMSpec, VLLM)
register_scheduler(OrcaSpec, Orca)
register_scheduler(SarathiSpec, Sarathi)

__all__ = [
    "SCHEDULERS",
    "BatchPlan",
    "Queues",
    "Scheduler",
    "fill_decode",
    "fill_prefill",
    "make_scheduler",
    "register_scheduler",
    "unregister_scheduler",
]
