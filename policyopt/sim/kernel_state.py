"""The compiled loop's arrays as one numba structure, so that a call resuming the kernel is
cheap.

Numba checks the type of every argument at each call from Python: the kernel's hundred arrays
cost about 5 to 10 microseconds a call, which a run to the horizon pays a few times but an
external-mode run (one call per decision) pays at every step. :func:`pack` puts the arrays of a
:class:`~policyopt.sim.compiled_loop.LoopState` in one :class:`KernelState` (a numba
``StructRef``), and :func:`~policyopt.sim.station_kernel.resume` runs the kernel on it: one
argument to check, under a microsecond.
"""

from __future__ import annotations

import inspect
from typing import Any

from numba import njit
from numba.core import types
from numba.experimental import structref

from policyopt.sim.station_kernel import (
    run_stations,
)

FIELDS: tuple[str, ...] = tuple(inspect.signature(run_stations.py_func).parameters)[:-1]
"""The kernel's arguments but the last (``progress_every``): the fields of
:class:`KernelState`, named and ordered as :func:`~policyopt.sim.station_kernel.run_stations`
takes them (:class:`~policyopt.sim.compiled_loop.LoopState` holds each under that name)."""


@structref.register
class KernelStateType(types.StructRef):
    """The numba type of :class:`KernelState` (its fields typed by the values packed)."""

    def preprocess_fields(self, fields: Any) -> tuple[tuple[str, Any], ...]:
        return tuple((name, types.unliteral(t)) for name, t in fields)


class KernelState(structref.StructRefProxy):
    """The kernel's arrays in one object (made by :func:`pack`; read by :func:`resume`)."""


structref.define_proxy(KernelState, KernelStateType, list(FIELDS))


@njit(cache=True)
def _make(*values):  # type: ignore[no-untyped-def]
    return KernelState(*values)


def pack(state: Any) -> KernelState:
    """One :class:`KernelState` holding ``state``'s arrays (the same buffers, not copies):
    pack again after ``state`` replaced one (it grew)."""
    return _make(*[getattr(state, name) for name in FIELDS])
