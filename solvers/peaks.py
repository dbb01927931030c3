"""Peak loads of networks whose arrivals vary in time (``docs/arrivals.md``).

Capacity (traffic equations, the static planning LP) uses each workflow's long-run rate. A
workflow with a rate profile (``piecewise``) or a Markov-modulated rate (``mmpp``) has
periods at a higher rate: :func:`peak_overloads` finds the engines that such a peak, held
alone (the other workflows at their long-run rates), would load to 1 or more while their
long-run load is below 1. The network is then stable in the long run, but its queues build
up during each peak and drain after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from policyopt.model.network import NetworkSpec
from policyopt.solvers.traffic import traffic


@dataclass(frozen=True)
class PeakOverload:
    """``workflow`` at its peak ``peak_rate`` (requests/s, long-run ``rate``) loads ``engine``
    to ``peak_load`` (long-run ``load``)."""

    workflow: str
    rate: float
    peak_rate: float
    engine: str
    load: float
    peak_load: float

    def text(self) -> str:
        return (
            f"warning: workflow {self.workflow!r} peaks at {self.peak_rate:.4g} requests/s "
            f"(long-run {self.rate:.4g}): engine {self.engine!r} is then at load "
            f"{self.peak_load:.3f} (long-run {self.load:.3f}); queues build up during each peak"
        )


def peak_overloads(net: NetworkSpec) -> list[PeakOverload]:
    """The engines a workflow's peak rate overloads while their long-run load is below 1."""
    flow = traffic(net)
    out: list[PeakOverload] = []
    for wf in net.workflows:
        rates = getattr(wf.arrival, "rates", None)
        if not rates:
            continue
        peak = float(max(rates))
        if peak <= wf.rate * (1 + 1e-12):
            continue
        at_peak = traffic(net.with_rates({wf.name: peak}))
        for j, engine in enumerate(flow.engines):
            load, high = float(flow.loads[j]), float(at_peak.loads[j])
            if load < 1 <= high:
                out.append(PeakOverload(wf.name, wf.rate, peak, engine, load, high))
    return out
