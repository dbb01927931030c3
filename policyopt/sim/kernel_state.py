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

KERNEL_ARGS: tuple[str, ...] = tuple(inspect.signature(run_stations.py_func).parameters)
"""The kernel's arguments, named and ordered as :func:`~policyopt.sim.station_kernel.
run_stations` takes them (:class:`~policyopt.sim.compiled_loop.LoopState` holds each but the
last, ``progress_every``, under that name)."""

EXTRAS = ("scale", "weights", "obs", "out")
"""What the kernel computes an observation from and into (see :func:`~policyopt.sim.
station_kernel.observe`)."""

FIELDS = KERNEL_ARGS + EXTRAS
"""The fields of :class:`KernelState`."""


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


def pack(state: Any, progress_every: int, *extras: Any) -> KernelState:
    """One :class:`KernelState` holding ``state``'s arrays (the same buffers, not copies),
    ``progress_every`` and the four arrays of :data:`EXTRAS`: pack again after ``state``
    replaced one (it grew)."""
    if len(extras) != len(EXTRAS):
        raise ValueError(f"pack: {len(EXTRAS)} arrays after progress_every ({', '.join(EXTRAS)})")
    return _make(*[getattr(state, name) for name in KERNEL_ARGS[:-1]], progress_every, *extras)
