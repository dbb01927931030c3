"""The admission rule registry: a rule's name maps to its options spec and its class.

One module per rule, one line to register it::

    register_admission(MySpec, MyRule)

``MySpec`` is an :class:`~policyopt.model.admission.AdmissionSpec` subclass with
``name: Literal["mine"] = "mine"`` (options as fields; ``needs_lengths = True`` if it reads
output lengths); ``MyRule`` an :class:`~policyopt.sim.admission.base.AdmissionRule` subclass
whose ``admit`` returns the prompts shown. After that line ``kv_cache.admission: mine`` is
valid in scenario and network files and the network simulator's engines run it.
"""

from __future__ import annotations

from policyopt.model.admission import (
    AdmissionSpec,
    FCFSAdmission,
    MCSFAdmission,
    NestedWaitAdmission,
    WaitAdmission,
    register_admission_spec,
    unregister_admission_spec,
)
from policyopt.sim.admission.base import AdmissionContext, AdmissionRule, QueuedRule
from policyopt.sim.admission.fcfs import FCFS
from policyopt.sim.admission.mc_sf import MCSF
from policyopt.sim.admission.nested_wait import NestedWait
from policyopt.sim.admission.wait import Wait

ADMISSIONS: dict[str, type[AdmissionRule]] = {}
"""Admission rule classes by name."""


def register_admission(spec: type[AdmissionSpec], rule: type[AdmissionRule]) -> None:
    """Register an admission rule: its options ``spec`` (valid in files from now on) and the
    ``rule`` class that decides. Registering a name again replaces it."""
    register_admission_spec(spec)
    ADMISSIONS[spec.model_fields["name"].default] = rule


def unregister_admission(name: str) -> None:
    """Forget admission rule ``name`` (its spec and its class)."""
    unregister_admission_spec(name)
    ADMISSIONS.pop(name, None)


def make_admission(spec: AdmissionSpec, ctx: AdmissionContext) -> AdmissionRule:
    """The rule object of ``spec`` at the engine described by ``ctx``."""
    cls = ADMISSIONS.get(spec.name)
    if cls is None:
        raise KeyError(f"admission rule {spec.name!r} has a spec but no class: register it")
    return cls(spec, ctx)


register_admission(FCFSAdmission, FCFS)
register_admission(MCSFAdmission, MCSF)
register_admission(WaitAdmission, Wait)
register_admission(NestedWaitAdmission, NestedWait)

__all__ = [
    "ADMISSIONS",
    "AdmissionContext",
    "AdmissionRule",
    "QueuedRule",
    "make_admission",
    "register_admission",
    "unregister_admission",
]
