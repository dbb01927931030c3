"""The simulators and what they report: :func:`simulate` runs a scenario on the single-engine
simulator, :func:`simulate_classes` a scenario with request classes on its one-engine
network (:mod:`policyopt.sim.network_sim`)."""

from policyopt.sim.engine_sim import BatchRecord, EngineSimulator, RequestList
from policyopt.sim.result import EngineResult
from policyopt.sim.run import simulate, simulate_classes

__all__ = [
    "BatchRecord",
    "EngineResult",
    "EngineSimulator",
    "RequestList",
    "simulate",
    "simulate_classes",
]
